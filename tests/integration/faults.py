"""The engine tier's fault scenarios (issue 24): what an interrupted, failing or disturbed
``pulumi up`` does to a stack, and that the recovery docs/operations.md documents works.

Each fault is a step of the ``faults`` scenario (tests/integration/lifecycle.py,
``fault_steps``) with an exact expected outcome; docs/integration.md lists them and what the
engine showed. ``soak_steps`` is the opt-in ``soak`` scenario (five ``up`` → ``destroy``
cycles). The world's knobs used here are documented in tests/integration/world.py.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.lifecycle import (
    DYNAMIC_PROVIDER,
    STEP_TIMEOUT,
    Plan,
    Scenario,
    Step,
    check_kubectl,
    events,
    expect_destroyed,
    expect_nothing,
    expect_only,
    owned,
    poll,
    read_plan,
    run_step,
    short,
    state_file,
)

GATE_SUFFIXES = ("-cilium-rollout", "-metallb-webhook", "-lb-ips")
ROLLOUT_SHORT = 20  # the rollout gate's bound while the world holds Cilium not ready (seconds)
HARD_LIMIT_GRACE = 15  # kindmesh.deploy.gate_cmd ends a gate this long after its deadline at the latest
# Things that run only while a pulumi command does: the CLI, its plugins and language host,
# and the program's own processes (gates, kindctl). The simulated clusters are the world's.
RUN_PROCESSES = ("pulumi", "kindmesh.deploy", "fake_kind", "fake_docker cli", "helm")


# ====================================================================== small helpers


def kind_name(sc: Scenario, cluster: str) -> str:
    from kindmesh.core.planner import kind_name_for
    return kind_name_for(sc.stack, cluster)


def cluster_dir(sc: Scenario, cluster: str) -> Path:
    assert sc.world is not None
    return sc.world.root / "clusters" / kind_name(sc, cluster)


def argv(sc: Scenario, args: list[str], event_log: Path | None = None) -> list[str]:
    """What ``Scenario.pulumi`` runs."""
    out = ["pulumi", *args, "--stack", sc.stack, "--non-interactive"]
    return out + (["--event-log", str(event_log)] if event_log else [])


def run_processes(sc: Scenario) -> list[str]:
    """The processes of pulumi runs in this scenario's project that are still there: the CLI,
    plugins, language host and the program's commands all run in the project directory."""
    out = []
    root = str(sc.workdir)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = Path(f"/proc/{entry}/stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + "/")) and any(p in cmd for p in RUN_PROCESSES):
            out.append(f"{entry}: {cmd[:160]}")
    return sorted(out)


def no_processes_left(sc: Scenario, timeout: float = 60) -> list[str]:
    """Every process of the interrupted run gone (a gate past its deadline ends itself)."""
    try:
        poll(lambda: not run_processes(sc), timeout, "the run's processes ending")
    except TimeoutError:
        return [f"processes of the interrupted run still there after {timeout:.0f}s: {run_processes(sc)[:6]}"]
    return []


def exported(sc: Scenario) -> dict[str, Any]:
    proc = sc.pulumi(["stack", "export"])
    return dict(json.loads(proc.stdout or "{}").get("deployment") or {})


def pending(sc: Scenario) -> list[str]:
    return [f"{p.get('type')} {short(p.get('resource', {}).get('urn', ''))}"
            for p in exported(sc).get("pending_operations") or []]


def no_replacements(plan: Plan) -> list[str]:
    return [f"{op} of {short(u)} (a finished resource must not be replaced or deleted)"
            for u, op in sorted(plan.changed().items()) if op in ("replace", "delete")]


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def pre_event(event_log: Path, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The first resourcePreEvent of the log that ``match`` accepts (the log is being written)."""
    for ev in events(event_log):
        md = (ev.get("resourcePreEvent") or {}).get("metadata")
        if md and match(md):
            return dict(md)
    return None


def is_create_of(suffixes: tuple[str, ...] = (), typ: str = "") -> Callable[[dict[str, Any]], bool]:
    def match(md: dict[str, Any]) -> bool:
        if md.get("op") != "create":
            return False
        if typ and md.get("type") != typ:
            return False
        return not suffixes or md.get("urn", "").endswith(suffixes)
    return match


KIND_CREATE = is_create_of(("-kind-cluster",), "command:local:Command")
HELM_INSTALL = is_create_of(typ="kubernetes:helm.sh/v3:Release")
GATE = is_create_of(GATE_SUFFIXES, "command:local:Command")


def interrupted_up(sc: Scenario, logdir: Path, slug: str, when: Callable[[dict[str, Any]], bool], what: str,
                   sig: signal.Signals | Callable[[], None], in_flight: Callable[[], bool] | None = None,
                   after: Callable[[], None] | None = None) -> tuple[list[str], Plan, str]:
    """``pulumi up`` started as ``sc.pulumi`` would, disturbed once the engine starts the
    operation ``when`` accepts (and ``in_flight()`` holds: the world shows it under way): ``sig``
    sent to it, or ``sig()`` called (Docker stopped, say). ``after()`` runs once the up has
    ended, when it was disturbed. Returns (problems, the plan of what it did, its output)."""
    event_log = logdir / f"{sc.name}-{slug}.events.jsonl"
    event_log.unlink(missing_ok=True)
    proc = subprocess.Popen(argv(sc, ["up", "--yes", "--skip-preview"], event_log), cwd=sc.workdir, env=sc.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    problems: list[str] = []
    out = ""
    disturbed = False
    try:
        try:
            hit = poll(lambda: proc.poll() is not None or pre_event(event_log, when), 600, what)
            if proc.poll() is None and in_flight is not None:
                poll(lambda: proc.poll() is not None or in_flight(), 120, f"{what} under way in the world")
        except TimeoutError as exc:
            problems.append(str(exc))
            hit = None
        if proc.poll() is not None:
            problems.append(f"the up ended (exit {proc.returncode}) before {what}: nothing was interrupted")
        else:
            print(f"       {sig.name if isinstance(sig, signal.Signals) else sig.__doc__} during {what}: "
                  f"{short(hit['urn']) if isinstance(hit, dict) else ''}", flush=True)
            if isinstance(sig, signal.Signals):
                proc.send_signal(sig)
            else:
                sig()
            disturbed = True
        out, _ = proc.communicate(timeout=STEP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            out += proc.communicate()[0]
        if disturbed and after is not None:
            after()
    (logdir / f"{sc.name}-{slug}.out").write_text(out)
    plan = read_plan(event_log)
    if proc.returncode == 0 and not problems:
        problems.append("the interrupted up exited 0 (Docker stopped, or a signal, during it)")
    problems += no_replacements(plan)
    return problems, plan, out


# ====================================================================== 1. interrupted up


def sigint_step(slug: str, when: Callable[[dict[str, Any]], bool], what: str,
                in_flight: Callable[[Scenario], Callable[[], bool]] | None = None) -> Callable[[Scenario, Path], list[str]]:
    def step(sc: Scenario, logdir: Path) -> list[str]:
        problems, _, out = interrupted_up(sc, logdir, slug, when, what, signal.SIGINT,
                                          in_flight(sc) if in_flight else None)
        print(f"       pulumi said: {tail(out, 2)[:300]!r}", flush=True)
        problems += no_processes_left(sc)
        left = pending(sc)
        if left:  # a SIGINT lets in-flight operations finish: nothing is left pending
            problems.append(f"pending operations after a SIGINT: {left}")
        return problems
    step.__doc__ = (f"SIGINT during {what}: pulumi finishes what is in flight and exits non-zero; no process "
                    "of the run left; no pending operation; nothing replaced or deleted")
    return step


def cluster_dir_appeared(sc: Scenario) -> Callable[[], bool]:
    assert sc.world is not None
    root = sc.world.root / "clusters"
    mine = {kind_name(sc, c) for c in sc.cluster_names()}
    return lambda: root.exists() and any(p.name in mine for p in root.iterdir())


def engine_address(cmd: str) -> str:
    """The engine address a plugin or language host was started with (its last argument)."""
    last = cmd.split()[-1] if cmd.split() else ""
    return last if last.startswith("127.0.0.1:") else ""


def orphans_of_a_killed_engine(sc: Scenario) -> dict[str, list[int]]:
    """The run's processes still there, by the engine address they were started with."""
    out: dict[str, list[int]] = {}
    for entry in run_processes(sc):
        pid, cmd = entry.split(": ", 1)
        out.setdefault(engine_address(cmd), []).append(int(pid))
    return out


def sigkill_step(sc: Scenario, logdir: Path) -> list[str]:
    """SIGKILL during a Helm install (of the added cluster yy): the state keeps the in-flight
    creates as pending operations and the backend keeps the killed run's lock; what is left
    running is the killed engine's plugin hosts only (Pulumi's Go plugins check their engine
    every 5 minutes; the Python dynamic-provider host never does) — no gate, kindctl or kind
    process outlives its own work"""
    problems, _, _ = interrupted_up(sc, logdir, "sigkill", HELM_INSTALL, "a Helm install", signal.SIGKILL)
    left = pending(sc)
    print(f"       pending operations after SIGKILL: {left}", flush=True)
    if not left:
        problems.append("no pending operation after a SIGKILL during a Helm install")
    locks = state_file(sc).parents[2] / "locks"
    if not (locks.exists() and any(locks.rglob("*.json"))):
        problems.append("no lock left by the killed run")
    try:  # the program's own processes (gates, kindctl) end with their work
        poll(lambda: set(orphans_of_a_killed_engine(sc)) <= {a for a in orphans_of_a_killed_engine(sc) if a}, 120,
             "the run's non-plugin processes ending")
    except TimeoutError:
        problems.append(f"processes other than the killed engine's plugins still there: {run_processes(sc)}")
    hosts = {a: len(p) for a, p in orphans_of_a_killed_engine(sc).items() if a}
    print(f"       left running: the killed engine's plugin hosts {hosts} ({run_processes(sc)[:8]})", flush=True)
    if len(hosts) > 1:
        problems.append(f"plugin hosts of more than one engine left: {hosts}")
    return problems


def lock_of_a_dead_run(sc: Scenario) -> int | None:
    """The pid of the run holding the stack's lock when that process no longer runs."""
    locks = state_file(sc).parents[2] / "locks"
    for path in locks.rglob("*.json") if locks.exists() else []:
        try:
            pid = int(json.loads(path.read_text()).get("pid") or 0)
        except (ValueError, OSError):
            continue
        if pid and not Path(f"/proc/{pid}").exists():
            return pid
    return None


def end_processes(pids: list[int], grace: float = 10) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    try:
        poll(lambda: not any(Path(f"/proc/{p}").exists() and not _zombie(p) for p in pids), grace, "TERM")
    except TimeoutError:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] == "Z"
    except (OSError, IndexError):
        return True


def helm_uninstall(sc: Scenario, release: str) -> str:
    """``helm uninstall`` of a Pulumi release resource ``<cluster>-cilium``/``<cluster>-metallb``
    with the stack's kubeconfig file (docs/operations.md: a killed run's half-made release)."""
    from kindmesh.core.render import CILIUM_NAMESPACE, METALLB_NAMESPACE
    cluster, chart = release.rsplit("-", 1)
    namespace = {"cilium": CILIUM_NAMESPACE, "metallb": METALLB_NAMESPACE}[chart]
    base = ["helm", "--kubeconfig", str(sc.kubeconfig_file()), "--kube-context", cluster, "-n", namespace]
    status = subprocess.run([*base, "status", chart], env=sc.env, capture_output=True, text=True, timeout=120, check=False)
    if status.returncode != 0:
        return "not installed"
    proc = subprocess.run([*base, "uninstall", chart], env=sc.env, capture_output=True, text=True, timeout=300,
                          check=False)
    return f"exit {proc.returncode} {(proc.stdout + proc.stderr).strip()[-120:]}"


def recover(sc: Scenario, logdir: Path) -> list[str]:
    """the documented recovery (docs/operations.md): a killed run's lock (its pid gone): end
    the plugin hosts it left (by their engine address) and `pulumi cancel`; then `up` again;
    where Pulumi reports pending operations, `refresh --clear-pending-creates` and `up`: the
    planned state, nothing replaced or deleted; a preview then shows no change, nothing
    pending, no process left"""
    problems: list[str] = []
    runs = []
    dead = lock_of_a_dead_run(sc)
    if dead:
        left = {a: p for a, p in orphans_of_a_killed_engine(sc).items() if a}
        end_processes([p for pids in left.values() for p in pids])
        proc = sc.pulumi(["cancel", "--yes"])
        runs.append(f"lock of dead pid {dead}: ended {sum(len(p) for p in left.values())} plugin host(s) of "
                    f"{sorted(left)}; pulumi cancel: exit {proc.returncode}")
        if proc.returncode != 0:
            return [f"pulumi cancel failed: {tail(proc.stdout + proc.stderr)}"]
    cleared: list[str] = []  # pending creates of Helm releases cleared from the state
    for attempt in range(4):
        log = logdir / f"{sc.name}-recover-{attempt}.events.jsonl"
        proc = sc.pulumi(["up", "--yes", "--skip-preview"], event_log=log)
        out = proc.stdout + proc.stderr
        (logdir / f"{sc.name}-recover-{attempt}.out").write_text(out)
        plan = read_plan(log)
        said = [ln.strip()[:200] for ln in out.splitlines() if "pending" in ln.lower()][:2]
        runs.append(f"up: exit {proc.returncode}, {plan.by_op()}" + (f", said {said}" if said else ""))
        problems += no_replacements(plan)
        if proc.returncode == 0:
            sc.applied = copy.deepcopy(sc.config)
            break
        if "cannot re-use a name that is still in use" in out and cleared:
            # the release the killed run was installing exists in the cluster, no longer in the state
            refused = set(re.findall(r"kubernetes:helm\.sh/v3:Release \(([^)]+)\):\n\s+error: cannot re-use a name", out))
            for release in sorted(refused & set(cleared)):
                done = helm_uninstall(sc, release)
                runs.append(f"helm uninstall {release}: {done}")
            cleared = []
            continue
        if not pending(sc):
            problems.append(f"recovery up failed, and not on pending operations:\n{tail(out)}")
            break
        cleared = [p.split("::")[-1] for p in pending(sc) if "kubernetes:helm.sh/v3:Release" in p]
        ref = sc.pulumi(["refresh", "--clear-pending-creates", "--yes", "--skip-preview"],
                        event_log=logdir / f"{sc.name}-recover-{attempt}-refresh.events.jsonl")
        runs.append(f"refresh --clear-pending-creates: exit {ref.returncode}")
        (logdir / f"{sc.name}-recover-{attempt}-refresh.out").write_text(ref.stdout + ref.stderr)
        if ref.returncode != 0:
            problems.append(f"refresh --clear-pending-creates failed:\n{tail(ref.stdout + ref.stderr)}")
            break
    else:
        problems.append("no successful up after 4 recovery attempts")
    print(f"       recovery: {'; '.join(runs)}"[:3000], flush=True)
    if not problems:
        problems += after_up_nothing_left(sc, logdir, "recover")
    return problems


def after_up_nothing_left(sc: Scenario, logdir: Path, slug: str) -> list[str]:
    """A preview finds nothing to do, no operation is pending, no process of the runs is left."""
    log = logdir / f"{sc.name}-{slug}-preview.events.jsonl"
    proc = sc.pulumi(["preview"], event_log=log)
    problems = [] if proc.returncode == 0 else [f"preview failed:\n{tail(proc.stdout + proc.stderr)}"]
    problems += [f"after recovery, preview: {p}" for p in expect_nothing(read_plan(log), sc)]
    problems += [f"pending after recovery: {p}" for p in pending(sc)]
    problems += no_processes_left(sc, timeout=30)
    return problems


# ====================================================================== 2. a gate that never passes


def admin_api(sc: Scenario, cluster: str) -> Any:
    from kubernetes import client, config
    return client.AppsV1Api(config.new_client_from_config(str(cluster_dir(sc, cluster) / "admin.kubeconfig")))


def cilium_ready(sc: Scenario, cluster: str) -> int:
    ds = admin_api(sc, cluster).read_namespaced_daemon_set("cilium", "kube-system")
    return int((ds.status.number_ready if ds.status else 0) or 0)


def set_rollout_timeout(seconds: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["config"]["kindmesh:timeouts"] = {**(doc["config"].get("kindmesh:timeouts") or {}), "rollout": seconds}
        return doc
    return edit


def gate_never_passes(sc: Scenario, logdir: Path) -> list[str]:
    """the world holds Cilium's agents in alpha not ready; the rollout bound is cut to 20 s
    (its gates rerun): `up` fails within the bound (+ the gate's grace + the engine's own
    time), its error names the cluster, the gate (DaemonSet kube-system/cilium, the limit)
    and the last state seen (0/1 pods ready); nothing replaced or deleted"""
    hold = cluster_dir(sc, "alpha") / "hold-cilium-not-ready"
    hold.write_text("held by the faults scenario\n")
    poll(lambda: cilium_ready(sc, "alpha") == 0, 60, "alpha's cilium DaemonSet counted not ready")
    sc.config = set_rollout_timeout(ROLLOUT_SHORT)(sc.config)
    import yaml
    (sc.workdir / f"Pulumi.{sc.stack}.yaml").write_text(yaml.safe_dump(sc.config, sort_keys=False))
    log = logdir / f"{sc.name}-gate-held.events.jsonl"
    t0 = time.monotonic()
    proc = sc.pulumi(["up", "--yes", "--skip-preview"], event_log=log)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    (logdir / f"{sc.name}-gate-held.out").write_text(out)
    plan = read_plan(log)
    problems = no_replacements(plan)
    if proc.returncode == 0:
        return [*problems, "up succeeded although alpha's Cilium was held not ready"]
    errors = [d for d in plan.diagnostics if "cilium" in d.lower()]
    print(f"       error: {errors[0].splitlines()[-1][:400] if errors else tail(out, 3)}", flush=True)
    for needle in ("'alpha'", "DaemonSet kube-system/cilium", f"limit {ROLLOUT_SHORT}s", "last seen: 0/1 pods ready"):
        if needle not in out:
            problems.append(f"the failure does not name {needle!r}")
    if "'beta'" in " ".join(errors):
        problems.append("the error names beta, whose Cilium was ready")
    budget = ROLLOUT_SHORT + HARD_LIMIT_GRACE + 60
    if seconds > budget:
        problems.append(f"up took {seconds:.0f}s to fail (bound {ROLLOUT_SHORT}s; allowed {budget}s)")
    print(f"       up failed after {seconds:.0f}s (gate bound {ROLLOUT_SHORT}s)", flush=True)
    return problems


def world_recovers(sc: Scenario, logdir: Path) -> list[str]:
    """the hold lifted: the next `up` (same stack file) completes, updating only alpha's
    rollout gate (the failed update left its old inputs in the state, so it runs again): no
    create, replace or delete. Then the default bound back: updates of the rollout gates only"""
    (cluster_dir(sc, "alpha") / "hold-cilium-not-ready").unlink()
    poll(lambda: cilium_ready(sc, "alpha") == 1, 60, "alpha's cilium DaemonSet ready again")
    problems: list[str] = []
    for slug, want in (("gate-recovered", ("alpha-cilium-rollout",)), ("gate-default", ("-cilium-rollout",))):
        if slug == "gate-default":
            import yaml
            sc.config = copy.deepcopy(sc.config)
            sc.config["config"].pop("kindmesh:timeouts", None)
            (sc.workdir / f"Pulumi.{sc.stack}.yaml").write_text(yaml.safe_dump(sc.config, sort_keys=False))
        log = logdir / f"{sc.name}-{slug}.events.jsonl"
        proc = sc.pulumi(["up", "--yes", "--skip-preview"], event_log=log)
        (logdir / f"{sc.name}-{slug}.out").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return [*problems, f"{slug}: up failed:\n{tail(proc.stdout + proc.stderr)}"]
        plan = read_plan(log)
        sc.applied = copy.deepcopy(sc.config)
        print(f"       {slug}: {plan.by_op()}", flush=True)
        problems += [f"{slug}: {op} of {short(u)}" for u, op in sorted(plan.changed().items())
                     if plan.types.get(u) != DYNAMIC_PROVIDER and (op != "update" or not u.endswith(want))]
        if not any(u.endswith(want[0]) for u in plan.changed()):
            problems.append(f"{slug}: no update of {want[0]}: the gate did not run again")
    return problems


# ====================================================================== 3. a kind cluster deleted outside Pulumi


def kind_delete(sc: Scenario, cluster: str) -> list[str]:
    proc = subprocess.run(["kind", "delete", "cluster", "--name", kind_name(sc, cluster)], env=sc.env,
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        return [f"kind delete cluster failed: {proc.stderr.strip()[-300:]}"]
    if kind_name(sc, cluster) in (sc.world.clusters() if sc.world else []):
        return ["the cluster is still in the world after kind delete"]
    return []


def deleted_by_hand_refresh(sc: Scenario, logdir: Path) -> list[str]:
    """`kind delete cluster` of beta by hand; `refresh` notices: it drops beta's kind
    cluster (and what lived in it: the Kubernetes provider finds it unreachable) from the
    state, and nothing of alpha's"""
    problems = kind_delete(sc, "beta")
    if problems:
        return problems
    log = logdir / f"{sc.name}-deleted-refresh.events.jsonl"
    proc = sc.pulumi(["refresh", "--yes", "--skip-preview"], event_log=log)
    (logdir / f"{sc.name}-deleted-refresh.out").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return [f"refresh failed:\n{tail(proc.stdout + proc.stderr)}"]
    plan = read_plan(log)
    print(f"       refresh summary: {plan.summary}", flush=True)
    after = {r["urn"] for r in exported(sc).get("resources") or []}
    gone = sorted(short(u) for u in plan.ops if u not in after)
    print(f"       dropped from the state: {gone}", flush=True)
    if not any(g.endswith("::beta-kind") for g in gone):
        problems.append(f"refresh did not drop beta's kind cluster from the state (dropped: {gone})")
    problems += [f"refresh dropped {g}, not beta's" for g in gone if not g.split("::")[-1].startswith("beta")]
    return problems


def deleted_by_hand_up(sc: Scenario, logdir: Path) -> list[str]:
    """the next `up` recreates beta on its own: a new presence token (refresh dropped the old
    one) runs the kind-cluster command's update, which makes the cluster again; beta's
    releases, gates and demo are created or updated; its Kubernetes provider (a new API
    server) is the only thing replaced; alpha is at most updated; a preview after it shows
    no change and kubectl reaches beta"""
    log = logdir / f"{sc.name}-deleted-up.events.jsonl"
    proc = sc.pulumi(["up", "--yes", "--skip-preview"], event_log=log)
    out = proc.stdout + proc.stderr
    (logdir / f"{sc.name}-deleted-up.out").write_text(out)
    plan = read_plan(log)
    print(f"       up: exit {proc.returncode}, {plan.by_op()}", flush=True)
    if proc.returncode != 0:
        return [f"up did not recreate beta:\n{tail(out)}"]
    problems: list[str] = []
    if kind_name(sc, "beta") not in (sc.world.clusters() if sc.world else []):
        problems.append("up succeeded but the cluster was not recreated")
    changed = plan.changed()
    for urn, op in sorted(changed.items()):
        who = urn.rsplit("::", 1)[-1]
        if op in ("replace", "delete") and not (who.startswith("beta") and plan.types.get(urn) == "pulumi:providers:kubernetes"):
            problems.append(f"{op} of {short(urn)} (only beta's Kubernetes provider may be replaced: a new API server)")
        if who.startswith("alpha") and op != "update":
            problems.append(f"{op} of alpha's {short(urn)} (a peer's may only be updated)")
    wanted = {"beta-kind-present": "create", "beta-kind-cluster": "update", "beta-kind": "create", "beta-cilium": "create",
              "beta-metallb": "create"}
    for res, op in wanted.items():
        if not any(u.endswith(f"::{res}") and o == op for u, o in changed.items()):
            problems.append(f"expected a {op} of {res}")
    return problems + check_kubectl(sc) + after_up_nothing_left(sc, logdir, "deleted")


def destroy_after_delete_by_hand(sc: Scenario, logdir: Path) -> list[str]:
    """`kind delete cluster` of alpha by hand, then `destroy` without a refresh: it succeeds
    and leaves nothing (no cluster, network, kubeconfig file, resource in the stack)"""
    problems = kind_delete(sc, "alpha")
    if problems:
        return problems
    row = run_step(sc, Step("destroy (alpha deleted by hand)", "destroy", expect_destroyed), logdir)
    print(f"       destroy: {row['summary']}", flush=True)
    return list(row["problems"]) + no_processes_left(sc, timeout=30)


# ====================================================================== 4. Docker down during up


def stop_docker(sc: Scenario) -> None:
    assert sc.world is not None and sc.world.daemon is not None
    sc.world.daemon.terminate()
    sc.world.daemon.wait(30)


def start_docker(sc: Scenario) -> None:
    assert sc.world is not None
    (sc.world.root / "docker" / "daemon.ready").unlink(missing_ok=True)
    sc.world.start()


def add_cluster(name: str, cid: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["config"]["kindmesh:clusters"] = [*doc["config"]["kindmesh:clusters"], {"name": name, "id": cid, "workers": 0}]
        return doc
    return edit


def docker_down(sc: Scenario, logdir: Path) -> list[str]:
    """Docker stopped while `up` creates the added cluster zz's kind cluster: `up` fails with
    one error of ours, saying the Docker daemon is not reachable (and what kind said); the state stays consistent (no pending operation, nothing
    replaced or deleted; a refresh then is clean for what exists); once Docker is back the next
    `up` completes, and a preview after it shows no change"""
    assert sc.world is not None
    import yaml
    sc.config = add_cluster("zz", 9)(sc.config)
    (sc.workdir / f"Pulumi.{sc.stack}.yaml").write_text(yaml.safe_dump(sc.config, sort_keys=False))
    zz_dir = sc.world.root / "clusters" / kind_name(sc, "zz")

    def when(md: dict[str, Any]) -> bool:
        return bool(KIND_CREATE(md)) and md.get("urn", "").endswith("zz-kind-cluster")

    def stop() -> None:
        """Docker stopped"""
        stop_docker(sc)
    pending_then: list[str] = []

    def back() -> None:  # what the failed up left, seen before Docker comes back
        pending_then.extend(pending(sc))
        start_docker(sc)
    problems, plan, _ = interrupted_up(sc, logdir, "docker-down", when, "zz's kind create", stop,
                                       in_flight=zz_dir.exists, after=back)
    errors = plan.diagnostics
    print(f"       {len(errors)} error(s): {[e.splitlines()[0][:200] for e in errors]}", flush=True)
    # besides the engine's own two (`update failed`, `Resource monitor has terminated`): one
    # error, and it names Docker
    ours = [e for e in errors if e not in ("update failed", "Resource monitor has terminated, shutting down")]
    if len(ours) != 1 or "the Docker daemon is not reachable" not in ours[0] \
            or "Is the docker daemon running?" not in ours[0]:
        problems.append(f"expected one error naming Docker, got {len(ours)}: {[e[:300] for e in ours]}")
    if pending_then:
        problems.append(f"pending operations left by the failed up: {pending_then}")
    if problems:
        return problems
    log2 = logdir / f"{sc.name}-docker-back.events.jsonl"
    proc2 = sc.pulumi(["up", "--yes", "--skip-preview"], event_log=log2)
    (logdir / f"{sc.name}-docker-back.out").write_text(proc2.stdout + proc2.stderr)
    plan2 = read_plan(log2)
    print(f"       Docker back, up: exit {proc2.returncode}, {plan2.by_op()}", flush=True)
    if proc2.returncode != 0:
        return [f"up after Docker came back failed:\n{tail(proc2.stdout + proc2.stderr)}"]
    sc.applied = copy.deepcopy(sc.config)
    problems += no_replacements(plan2)
    return problems + after_up_nothing_left(sc, logdir, "docker-back")


# ====================================================================== 7. soak


def soak_cycle_check(sc: Scenario, logdir: Path, cycle: int, seconds: list[float]) -> list[str]:
    """After a destroy: no process, file, docker network, kubeconfig context or world object left."""
    assert sc.world is not None
    problems = no_processes_left(sc, timeout=30)
    kinds, nets = owned(sc)
    left = [c for c in sc.world.clusters() if c in kinds]
    if left:
        problems.append(f"world clusters left: {left}")
    left_nets = [n for n in sc.world.networks() if n in nets]
    if left_nets:
        problems.append(f"docker networks left: {left_nets}")
    from tests.integration import fake_docker
    containers = [n.lstrip("/") for c in fake_docker.api_json("GET", "/containers/json?all=1") for n in c["Names"]
                  if n.lstrip("/").rsplit("-control-plane", 1)[0].rsplit("-worker", 1)[0] in kinds]
    if containers:
        problems.append(f"containers left: {containers}")
    kube = Path(sc.env["HOME"]) / ".kube" / "config"
    if kube.exists():
        import yaml
        ctx = [c["name"] for c in (yaml.safe_load(kube.read_text()) or {}).get("contexts") or []
               if any(k in c["name"] for k in kinds)]
        if ctx:
            problems.append(f"kubeconfig contexts left in {kube}: {ctx}")
    folder = sc.workdir / ".kindmesh" / sc.stack
    if folder.exists() and any(folder.iterdir()):
        problems.append(f"files left in {folder}: {sorted(p.name for p in folder.iterdir())}")
    # What stays by design (kindctl's per-name lock files, the host's image archives) is the
    # same after every cycle: anything new after the first is left over.
    now = files_of_the_run(sc)
    if cycle == 1:
        FILES_AFTER_FIRST[sc.name] = now
        print(f"       kept after cycle 1 (by design): {len(now)} file(s): {sorted(now)[:6]}", flush=True)
    else:
        new = sorted(now - FILES_AFTER_FIRST.get(sc.name, set()))
        if new:
            problems.append(f"files new since cycle 1: {new[:8]}")
    return problems


FILES_AFTER_FIRST: dict[str, set[str]] = {}


def files_of_the_run(sc: Scenario) -> set[str]:
    assert sc.world is not None
    out = set()
    for base in (Path(sc.env["HOME"]), Path(sc.env["KINDMESH_RUNTIME_DIR"]), sc.workdir / ".kindmesh",
                 sc.world.root / "clusters"):
        if base.exists():
            out |= {str(p) for p in base.rglob("*") if p.is_file()}
    return out


def soak(cycles: int = 5) -> list[Step]:
    steps: list[Step] = []
    times: list[float] = []
    for i in range(1, cycles + 1):
        def cycle(sc: Scenario, logdir: Path, i: int = i) -> list[str]:
            t0 = time.monotonic()
            up = run_step(sc, Step(f"up {i}", "up", expect_only("create")), logdir)
            problems = [f"up: {p}" for p in up["problems"]]
            down = run_step(sc, Step(f"destroy {i}", "destroy", expect_destroyed), logdir)
            problems += [f"destroy: {p}" for p in down["problems"]]
            times.append(time.monotonic() - t0)
            problems += soak_cycle_check(sc, logdir, i, times)
            print(f"       cycle {i}: up {up['seconds']}s, destroy {down['seconds']}s", flush=True)
            if i == cycles and len(times) == cycles:
                first = min(times[:2])
                if times[-1] > first * 1.5 + 15:
                    problems.append(f"cycles grew: {[round(t) for t in times]} s")
                print(f"       cycle times: {[round(t, 1) for t in times]} s", flush=True)
            return problems
        cycle.__doc__ = f"cycle {i}: up (creates only), destroy (nothing left); the time per cycle does not grow"
        steps.append(Step(f"cycle {i}: up, destroy", "custom", custom=cycle))
    return steps


# ====================================================================== the steps


def interrupted_up_steps() -> list[Step]:
    """Fault 1 from an empty stack: three SIGINTs, each at its phase, then the recovery."""
    return [
        Step("SIGINT during a kind create", "custom",
             custom=sigint_step("sigint-kind", KIND_CREATE, "a kind create", cluster_dir_appeared)),
        Step("SIGINT during a Helm install", "custom", custom=sigint_step("sigint-helm", HELM_INSTALL, "a Helm install")),
        Step("SIGINT during a gate", "custom", custom=sigint_step("sigint-gate", GATE, "a gate")),
        Step("up after the interrupts (recovery)", "custom", custom=recover),
    ]


def later_fault_steps() -> list[Step]:
    """Faults 2, 3, 4 and the SIGKILL of fault 1 on the running stack, then a destroy after a
    cluster was deleted by hand."""
    return [
        Step("gate never passes (alpha held)", "custom", custom=gate_never_passes),
        Step("world recovers: up", "custom", custom=world_recovers),
        Step("beta deleted by hand: refresh", "custom", custom=deleted_by_hand_refresh),
        Step("beta deleted by hand: up", "custom", custom=deleted_by_hand_up),
        Step("Docker down during up (add zz)", "custom", custom=docker_down),
        Step("SIGKILL during a Helm install (add yy)", "custom", custom=sigkill_step, edit=add_cluster("yy", 10)),
        Step("up after SIGKILL (recovery)", "custom", custom=recover),
        Step("alpha deleted by hand: destroy", "custom", custom=destroy_after_delete_by_hand),
    ]
