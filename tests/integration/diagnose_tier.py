"""The engine tier's ``diagnose`` scenario: `make diagnose` proven against the world's clusters.

    make integration SCENARIOS=diagnose

The ``ci`` stack (two clusters, on a subnet of its own) is brought up by the real engine; then
``python -m kindmesh.cli.diagnose --stack diagnose`` runs in the scenario's project as a user
would (cwd = the project, the world's PATH: its kind, docker and kubectl):

1. on the healthy stack: exit 0 and no FAIL row;
2. with one fault put in at a time, the way a user's reality produces it (through the API, the
   file system or a world knob), then taken out again: exit 1, the faulty cluster's first
   broken layer is the expected one, its evidence and fix name the right thing, and the other
   cluster has no FAIL row and is walked to the bottom (``faults()`` below). The faults
   alternate between the clusters, so each undo is checked by the next step (the node fault,
   last, is undone before destroy);
3. every archive written holds no secret: neither the mesh CA key (the ``cilium-ca`` Secret's
   ``ca.key``, as PEM and as base64) nor the kubeconfig's client key (raw and decoded).

The world's pods run no containers (kwok) and the API server's egress to a kubelet goes
nowhere: ``kubectl exec`` into a Cilium agent never reaches it, so ``cilium-dbg status`` (the
agents' health and their view of the mesh) cannot be read. diagnose reports an exec that never
reached the agent as a warn row at the ``cilium`` layer, not a FAIL; a healthy stack here is
exit 0 with no FAIL row, and only the warn rows of ALLOWED_WARNS.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.integration.lifecycle import poll

if TYPE_CHECKING:
    from tests.integration.lifecycle import Scenario, Step

STACK = "diagnose"
SUBNET = "172.23.0.0/24"  # beside ci (172.28), faults (172.22), defects (172.24), mixed (172.25)
DIAGNOSE_TIMEOUT = 180  # one diagnose run (its own deadline is 45 s, plus the archive)
FAULT_TIMEOUT = 90  # a fault taking effect, or its undo
# The warn rows a healthy stack shows in the world, each a limitation of the world, not of the
# stack: (layer, how the evidence starts).
ALLOWED_WARNS = (
    # the pods run no containers, and the API server's egress to the kubelet goes nowhere
    ("cilium", "cilium-dbg status not read: kubectl exec did not reach agent"),
    # the fake Docker Engine's version answer has no API version the doctor can compare
    ("host: engine API", "could not read the Engine API version"),
    # the fake Docker Engine's data root is not a directory diagnose can measure
    ("host: disk", "free space unknown"),
)


# ---------------------------------------------------------------------- the table diagnose prints


@dataclass
class DRow:
    cluster: str
    layer: str
    state: str
    evidence: str
    fix: str = ""


def parse_table(out: str) -> list[DRow]:
    """The rows of diagnose's table (columns by the header's positions; ``fix:`` lines attach
    to the row above)."""
    lines = out.splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.startswith("CLUSTER ") and " EVIDENCE" in ln), None)
    if head is None:
        return []
    h = lines[head]
    c_layer, c_state, c_ev = h.index("LAYER"), h.index("STATE"), h.index("EVIDENCE")
    rows: list[DRow] = []
    for ln in lines[head + 1:]:
        if ln.startswith(" " * c_layer) and ln.strip().startswith("fix: ") and rows:
            rows[-1].fix = ln.strip()[len("fix: "):]
            continue
        if not ln.strip() or ln.startswith(" ") or len(ln) < c_ev or ln[c_layer - 2:c_layer] != "  " \
                or ln[c_state - 2:c_state] != "  ":
            break  # the summary line after the table
        rows.append(DRow(ln[:c_layer].strip(), ln[c_layer:c_state].strip(), ln[c_state:c_ev].strip(), ln[c_ev:].strip()))
    return rows


# ---------------------------------------------------------------------- helpers


def kind_name(cluster: str) -> str:
    from kindmesh.core.naming import kind_name_for
    return kind_name_for(STACK, cluster)


def cluster_dir(sc: Scenario, cluster: str) -> Path:
    return Path(sc.env["KINDMESH_WORLD"]) / "clusters" / kind_name(cluster)


def kubectl(sc: Scenario, cluster: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl as the cluster's admin (the world's own kubeconfig: it works with the stack's deleted)."""
    kc = cluster_dir(sc, cluster) / "admin.kubeconfig"
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kc), "--request-timeout=20s", *args], env=sc.env,
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} ({cluster}): {proc.stderr.strip()[-400:]}")
    return proc


def get_json(sc: Scenario, cluster: str, *args: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(sc, cluster, "get", *args, "-o", "json").stdout))


@dataclass
class Run:
    rc: int
    out: str
    rows: list[DRow]
    archive: Path | None


def run_diagnose(sc: Scenario, logdir: Path, label: str) -> Run:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kindmesh.cli.diagnose",
                           "--stack", sc.stack], cwd=sc.workdir, env=sc.env, capture_output=True, text=True,
                          timeout=DIAGNOSE_TIMEOUT, check=False)
    seconds = time.monotonic() - t0
    out = proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else "")
    (logdir / f"{sc.name}-{label}.out").write_text(f"exit {proc.returncode} in {seconds:.1f}s\n{out}")
    archive = None
    for ln in proc.stdout.splitlines():
        if ln.startswith("everything read (secrets redacted): "):
            archive = Path(ln.split(": ", 1)[1].strip())
            if not archive.is_absolute():
                archive = sc.workdir / archive
    runs = SEEN.setdefault(sc.name, [])
    if archive is not None:
        runs.append(archive)
    print(f"       diagnose ({label}): exit {proc.returncode} in {seconds:.1f}s", flush=True)
    return Run(proc.returncode, out, parse_table(proc.stdout), archive)


SEEN: dict[str, list[Path]] = {}  # scenario -> the archives its diagnose runs wrote


def healthy_problems(run: Run, clusters: list[str], *, skip: str = "") -> list[str]:
    """Problems with a run that must show every cluster (but ``skip``) healthy."""
    problems = []
    for r in run.rows:
        if r.cluster == skip:
            continue
        if r.state == "FAIL":
            problems.append(f"{r.cluster} {r.layer}: FAIL {r.evidence[:300]} (fix: {r.fix[:200]})")
        elif r.state == "warn" and not any(r.layer == lay and r.evidence.startswith(ev) for lay, ev in ALLOWED_WARNS):
            problems.append(f"{r.cluster} {r.layer}: an unexpected warn: {r.evidence[:300]}")
    for c in clusters:
        if c == skip:
            continue
        layers = [r.layer for r in run.rows if r.cluster == c and r.state == "ok"]
        if "clustermesh" not in layers:
            problems.append(f"{c}: not walked down to clustermesh (ok layers: {layers})")
    return problems


# ---------------------------------------------------------------------- the steps


def step_healthy(sc: Scenario, logdir: Path) -> list[str]:
    """diagnose on the healthy stack: exit 0, no FAIL row, every cluster walked to the bottom;
    the only warn allowed is the world's missing exec server (cilium-dbg not read)"""
    run = run_diagnose(sc, logdir, "diagnose-healthy")
    problems = [] if run.rc == 0 else [f"diagnose exited {run.rc} on a healthy stack:\n{run.out[-2500:]}"]
    if not run.rows:
        return [*problems, "no table in diagnose's output"]
    problems += healthy_problems(run, sc.cluster_names())
    if run.archive is None or not run.archive.is_file():
        problems.append("no archive written")
    return problems


@dataclass
class Fault:
    name: str
    cluster: str  # the faulty cluster ('*': every cluster)
    layer: str  # its first broken layer
    evidence: tuple[str, ...]  # each must be in the FAIL row's evidence
    fix: tuple[str, ...]  # each must be in the FAIL row's fix
    inject: Callable[[Scenario], Any]  # returns the undo (None: the fault is left in)


def fault_step(fault: Fault) -> Callable[[Scenario, Path], list[str]]:
    def step(sc: Scenario, logdir: Path) -> list[str]:
        try:
            undo = fault.inject(sc)
        except Exception as exc:  # noqa: BLE001 - the step's failure, not the tier's
            return [f"the fault could not be put in: {type(exc).__name__}: {exc}"]
        try:
            return check(sc, logdir)
        except Exception as exc:  # noqa: BLE001 - e.g. diagnose past its time: the step's failure
            return [f"{type(exc).__name__}: {exc}"]
        finally:
            if undo is not None:
                undo(sc)  # a failed undo fails the run: the steps after it would mean nothing

    def check(sc: Scenario, logdir: Path) -> list[str]:
        run = run_diagnose(sc, logdir, "diagnose-" + fault.name.replace(" ", "-"))
        problems = [] if run.rc == 1 else [f"diagnose exited {run.rc}, not 1"]
        targets = sc.cluster_names() if fault.cluster == "*" else [fault.cluster]
        for c in targets:
            fails = [r for r in run.rows if r.cluster == c and r.state == "FAIL"]
            if not fails:
                problems.append(f"{c}: no FAIL row; its rows: {[(r.layer, r.state) for r in run.rows if r.cluster == c]}")
                continue
            row = fails[0]
            if row.layer != fault.layer:
                problems.append(f"{c}: first broken layer {row.layer!r}, expected {fault.layer!r}: {row.evidence[:300]}")
            problems += [f"{c}: the evidence does not name {w!r}: {row.evidence[:400]}" for w in fault.evidence
                         if w not in row.evidence]
            problems += [f"{c}: the fix does not name {w!r}: {row.fix[:400]}" for w in fault.fix if w not in row.fix]
            if len(fails) > 1:
                problems.append(f"{c}: more than one FAIL row: {[(r.layer, r.evidence[:120]) for r in fails]}")
        if fault.cluster != "*":
            problems += healthy_problems(run, sc.cluster_names(), skip=fault.cluster)
        if problems:
            problems.append(f"diagnose's output:\n{run.out[-3000:]}")
        return problems
    step.__doc__ = (f"{fault.name}: diagnose exits 1, {fault.cluster} first broken at {fault.layer!r}, "
                    f"the fix names {', '.join(fault.fix)}")
    return step


# -- the faults, each as a user's reality produces it


def kubeconfig_deleted(sc: Scenario) -> Callable[[Scenario], None]:
    """The stack's kubeconfig file removed (``rm .kindmesh/<stack>/kubeconfig``)."""
    kc = sc.kubeconfig_file()
    saved = kc.read_bytes()
    kc.unlink()

    def undo(sc: Scenario) -> None:
        kc.write_bytes(saved)
        kc.chmod(0o600)
    return undo


def operator_scaled_to_zero(cluster: str) -> Callable[[Scenario], Callable[[Scenario], None]]:
    """``kubectl scale deployment cilium-operator --replicas=0``: no operator runs."""
    def inject(sc: Scenario) -> Callable[[Scenario], None]:
        ns = ["-n", "kube-system"]
        before = get_json(sc, cluster, *ns, "deployment", "cilium-operator")["spec"].get("replicas", 1)
        kubectl(sc, cluster, *ns, "scale", "deployment", "cilium-operator", "--replicas=0")
        poll(lambda: not get_json(sc, cluster, *ns, "deployment", "cilium-operator")["status"].get("availableReplicas"),
             FAULT_TIMEOUT, "cilium-operator scaled to 0")

        def undo(sc: Scenario) -> None:
            kubectl(sc, cluster, *ns, "scale", "deployment", "cilium-operator", f"--replicas={before}")
            poll(lambda: (get_json(sc, cluster, *ns, "deployment", "cilium-operator")["status"]
                          .get("availableReplicas") or 0) >= before, FAULT_TIMEOUT, "cilium-operator back")
        return undo
    return inject


WEBHOOK_SVC = ("-n", "metallb-system", "service", "metallb-webhook-service")


def webhook_endpoints(sc: Scenario, cluster: str) -> int:
    slices = get_json(sc, cluster, "-n", "metallb-system", "endpointslices",
                      "-l", "kubernetes.io/service-name=metallb-webhook-service")
    return sum(len(e.get("addresses") or []) for s in slices.get("items") or [] for e in s.get("endpoints") or []
               if (e.get("conditions") or {}).get("ready") is not False)


def webhook_down(cluster: str) -> Callable[[Scenario], Callable[[Scenario], None]]:
    """MetalLB's webhook Service selects no pod any more (a hand edit of its selector): nothing
    serves the webhook, so the API server cannot call it."""
    def inject(sc: Scenario) -> Callable[[Scenario], None]:
        selector = get_json(sc, cluster, *WEBHOOK_SVC)["spec"]["selector"]
        kubectl(sc, cluster, "patch", *WEBHOOK_SVC, "--type=merge", "-p",
                json.dumps({"spec": {"selector": {"kindmesh-tier": "nothing-serves-the-webhook"}}}))
        poll(lambda: webhook_endpoints(sc, cluster) == 0, FAULT_TIMEOUT, "the webhook without endpoints")

        def undo(sc: Scenario) -> None:
            kubectl(sc, cluster, "patch", *WEBHOOK_SVC, "--type=json", "-p",
                    json.dumps([{"op": "replace", "path": "/spec/selector", "value": selector}]))
            poll(lambda: webhook_endpoints(sc, cluster) > 0, FAULT_TIMEOUT, "the webhook's endpoints back")
        return undo
    return inject


MESH_SVC = ("-n", "kube-system", "service", "clustermesh-apiserver")


def lb_ips(sc: Scenario, cluster: str) -> list[str]:
    ingress = ((get_json(sc, cluster, *MESH_SVC).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i.get("ip")) for i in ingress]


def lb_ip_never_assigned(cluster: str) -> Callable[[Scenario], Callable[[Scenario], None]]:
    """MetalLB's controller assigns nothing (world knob ``pause-lb-assignment``) and the mesh
    Service has no IP (its status cleared, as after a recreate)."""
    def inject(sc: Scenario) -> Callable[[Scenario], None]:
        from tests.integration.world import PAUSE_LB
        knob = cluster_dir(sc, cluster) / PAUSE_LB
        knob.write_text("diagnose scenario\n")
        kubectl(sc, cluster, "patch", *MESH_SVC, "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"loadBalancer": {"ingress": None}}}))
        poll(lambda: not lb_ips(sc, cluster), FAULT_TIMEOUT, "the mesh Service without an IP")

        def undo(sc: Scenario) -> None:
            knob.unlink()
            poll(lambda: bool(lb_ips(sc, cluster)), FAULT_TIMEOUT, "the mesh Service's IP back")
        return undo
    return inject


def peer_missing(cluster: str, peer: str) -> Callable[[Scenario], Callable[[Scenario], None]]:
    """One peer dropped from the cluster's mesh config (the ``cilium-clustermesh`` Secret)."""
    def inject(sc: Scenario) -> Callable[[Scenario], None]:
        secret = ("-n", "kube-system", "secret", "cilium-clustermesh")
        data = get_json(sc, cluster, *secret)["data"]
        if peer not in data:
            raise RuntimeError(f"{cluster}'s mesh config has no {peer} to drop: {sorted(data)}")
        kubectl(sc, cluster, "patch", *secret, "--type=json", "-p",
                json.dumps([{"op": "remove", "path": f"/data/{peer}"}]))

        def undo(sc: Scenario) -> None:
            kubectl(sc, cluster, "patch", *secret, "--type=merge", "-p", json.dumps({"data": {peer: data[peer]}}))
        return undo
    return inject


def node_not_ready(cluster: str) -> Callable[[Scenario], Any]:
    """The node's kubelet hangs (kwok stopped with SIGSTOP: no heartbeat, nothing puts Ready
    back) after posting NotReady (its container runtime down). Removing kwok's annotation was
    not enough: kwok still posted a Ready heartbeat now and then, and diagnose rightly saw a
    healthy node. Undone with SIGCONT (kwok heartbeats Ready again), so destroy still finds
    a kubelet to finish the pods it deletes."""
    def inject(sc: Scenario) -> Callable[[Scenario], None]:
        from tests.integration import simcluster
        state = simcluster.ClusterState.load(kind_name(cluster))
        if state is None or "kwok" not in state.pids:
            raise RuntimeError(f"no kwok process known for cluster {cluster}")
        kwok = state.pids["kwok"]
        node = next(iter(get_json(sc, cluster, "nodes")["items"]))["metadata"]["name"]
        os.kill(kwok, signal.SIGSTOP)

        def ready() -> bool:
            conds = get_json(sc, cluster, "node", node)["status"]["conditions"]
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [c for c in get_json(sc, cluster, "node", node)["status"]["conditions"] if c["type"] != "Ready"]
        conditions.append({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                           "message": "container runtime is down", "lastHeartbeatTime": now,
                           "lastTransitionTime": now})
        kubectl(sc, cluster, "patch", "node", node, "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"conditions": conditions}}))
        poll(lambda: not ready(), FAULT_TIMEOUT, f"node {node} not Ready")

        def undo(sc: Scenario) -> None:
            os.kill(kwok, signal.SIGCONT)
            poll(ready, FAULT_TIMEOUT, f"node {node} Ready again")
        return undo
    return inject


def faults() -> list[Fault]:
    s = f"STACK={STACK}"
    return [
        Fault("kubeconfig file deleted", "*", "kubernetes API", ("does not exist",),
              (f"make kubeconfig {s}",), kubeconfig_deleted),
        Fault("cilium operator unavailable", "alpha", "cilium", ("cilium-operator is scaled to 0",),
              ("scale deployment cilium-operator",), operator_scaled_to_zero("alpha")),
        Fault("metallb webhook down", "beta", "metallb", ("metallb-webhook-service", "no ready endpoint"),
              ("metallb-controller",), webhook_down("beta")),
        Fault("loadbalancer ip never assigned", "alpha", "metallb",
              ("Service kube-system/clustermesh-apiserver", "no LoadBalancer IP"),
              ("describe service clustermesh-apiserver", "metallb-controller"), lb_ip_never_assigned("alpha")),
        Fault("peer missing from mesh config", "beta", "clustermesh", ("cilium-clustermesh", "missing alpha"),
              (f"make up {s}",), peer_missing("beta", "alpha")),
        Fault("node not ready", "alpha", "nodes", ("control-plane is not Ready", "container runtime is down"),
              ("journalctl -u kubelet", "describe node"), node_not_ready("alpha")),
    ]


# ---------------------------------------------------------------------- secrets in the archives


def secrets_of(sc: Scenario) -> dict[str, str]:
    """What must never be in an archive: the mesh CA key and the kubeconfig's client keys."""
    found: dict[str, str] = {}
    for cluster in sc.cluster_names():
        b64 = get_json(sc, cluster, "-n", "kube-system", "secret", "cilium-ca")["data"]["ca.key"]
        pem = base64.b64decode(b64).decode()
        found[f"{cluster} CA key (base64)"] = b64
        found[f"{cluster} CA key (PEM)"] = pem
        for i, line in enumerate(ln for ln in pem.splitlines() if "-----" not in ln and len(ln) >= 16):
            found[f"{cluster} CA key (PEM line {i + 1})"] = line
    import yaml
    kc = yaml.safe_load(sc.kubeconfig_file().read_text())
    for user in kc.get("users") or []:
        u = user.get("user") or {}
        for key in ("client-key-data", "token", "password"):
            if u.get(key):
                found[f"kubeconfig {user['name']} {key}"] = u[key]
                if key.endswith("-data"):
                    decoded = base64.b64decode(u[key]).decode()
                    found[f"kubeconfig {user['name']} {key} (decoded)"] = decoded
                    for i, line in enumerate(ln for ln in decoded.splitlines() if "-----" not in ln and len(ln) >= 16):
                        found[f"kubeconfig {user['name']} {key} (line {i + 1})"] = line
    return found


def step_no_secrets(sc: Scenario, logdir: Path) -> list[str]:
    """every archive the runs wrote: no CA key, no kubeconfig key or token (raw, PEM, base64)"""
    archives = sorted(set(SEEN.get(sc.name, [])))
    problems = [] if archives else ["no archive to search"]
    secrets = secrets_of(sc)
    if not any("client-key-data" in k for k in secrets):
        problems.append("the kubeconfig has no client key to look for")
    searched, names, helm = 0, set(), False
    for path in archives:
        if not path.is_file():
            problems.append(f"archive missing: {path}")
            continue
        if path.stat().st_mode & 0o077:
            problems.append(f"{path.name} is readable by others: {oct(path.stat().st_mode & 0o777)}")
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace").read()
                searched += 1
                names.add(member.name.split("/", 1)[-1])
                helm = helm or "sh.helm.release.v1.cilium" in text
                problems += [f"{path.name}:{member.name} holds the {what}" for what, value in secrets.items()
                             if value in text]
    if archives and not (names >= {"kubeconfig.redacted.yaml", "report.txt"} and helm):
        problems.append(f"the archives lack what the search is about (the kubeconfig, the Helm release "
                        f"secrets): {sorted(names)[:20]}")
    (logdir / f"{sc.name}-secrets.out").write_text(
        f"{len(archives)} archives, {searched} files searched for {len(secrets)} secret strings\n"
        + "\n".join(f"{p.name}" for p in archives) + "\n" + "\n".join(problems))
    print(f"       {len(archives)} archives, {searched} files searched for {len(secrets)} secret strings", flush=True)
    return problems[:40]


# ---------------------------------------------------------------------- the scenario


def config(ci: dict[str, Any]) -> dict[str, Any]:
    """The ``ci`` stack file on a subnet of its own."""
    import copy
    doc = copy.deepcopy(ci)
    doc["config"]["kindmesh:network"] = {**doc["config"]["kindmesh:network"], "subnet": SUBNET}
    return doc


def steps(step: type[Step], expect_create: Any, expect_destroyed: Any) -> list[Step]:
    out = [step("up", "up", expect_create),
           step("diagnose: healthy stack", "custom", custom=step_healthy)]
    out += [step(f"diagnose: {f.name}", "custom", custom=fault_step(f)) for f in faults()]
    out += [step("diagnose: archives hold no secret", "custom", custom=step_no_secrets),
            step("destroy", "destroy", expect_destroyed)]
    return out


