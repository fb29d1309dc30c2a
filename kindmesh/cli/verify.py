"""Verify a live kindmesh stack with kubectl; pass or fail with a readable table.

    python -m kindmesh.cli.verify --stack dev          (what `make verify` runs)

Reads the stack's outputs (``verification`` spec and the secret ``kubeconfigs``) with
``pulumi stack output``, then, per cluster:

1. mesh: every Cilium agent reports exactly the expected remote clusters, all ready
   (``cilium-dbg status -o json`` -> ``cluster-mesh.clusters[].{name,ready}``);
   flows (when the cluster has a Hubble Relay): the ``hubble`` CLI in a Cilium agent reads
   recent flows through the relay's Service, over TLS checked against the CA the agent mounts
   (the mesh CA: ``/var/lib/cilium/tls/hubble/client-ca.crt``), naming the relay's certificate
   (``*.hubble-relay.cilium.io``); with mTLS it shows the agent's Hubble certificate;
2. global: N requests from the demo client to ``echo-global`` reach backends in every
   meshed cluster (counts per cluster);
3. affinity: ``echo`` with ``affinity: local`` stays local; with the local backend
   scaled to 0 it fails over to the peers; restored, it is local again (the stack is
   left as found); ``affinity: remote`` goes to peers;
4. policy (when on): the intruder's requests are dropped while the client's pass,
   across clusters (check 2 under the policies).

Waits are bounded and condition-based (``kubectl wait``/``rollout status``, or the
probe itself repeated under one deadline with bounded exponential backoff and jitter
between probes); nothing sleeps a fixed time and nothing spins. kubectl's own error is
shown in the failure detail. A missing kubectl or pulumi, a missing stack or a stack
without outputs is one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kindmesh.core.demo import REPLY_PREFIX  # the one definition of the reply format

FAILED = "CURL_FAILED"

Runner = Callable[[str, list[str], float], "Result"]


@dataclass
class Result:
    rc: int
    out: str
    err: str = ""


@dataclass
class Check:
    cluster: str
    name: str
    ok: bool
    detail: str


@dataclass
class Options:
    requests: int = 20
    mesh_timeout: float = 300.0
    converge_rounds: int = 10
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    backoff_initial: float = 1.0
    backoff_max: float = 20.0
    flows_timeout: float = 180.0
    flows_last: int = 20
    log: Callable[[str], None] = field(default=lambda _msg: None)

    def pause(self, attempt: int, deadline: float | None = None) -> None:
        """Backoff before retry ``attempt`` (0-based): doubling up to a cap, jittered, within the deadline."""
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 30))
        delay *= 0.5 + 0.5 * self.rand()
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - self.clock()))
        if delay > 0:
            self.sleep(delay)


# ----------------------------------------------------------------------------- parsing
def parse_mesh_status(text: str) -> dict[str, bool]:
    """``cilium-dbg status -o json`` -> {remote cluster name: ready}."""
    data = json.loads(text or "{}")
    mesh = data.get("cluster-mesh") or {}
    return {c["name"]: bool(c.get("ready")) for c in mesh.get("clusters") or [] if c.get("name")}


def parse_replies(text: str) -> tuple[Counter[str], int]:
    """Lines of a request batch -> (replies per cluster, failed requests)."""
    counts: Counter[str] = Counter()
    failed = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(FAILED):
            failed += 1
        elif line.startswith(REPLY_PREFIX):
            counts[line[len(REPLY_PREFIX):].split()[0]] += 1
        else:
            failed += 1  # anything else is not our backend answering
    return counts, failed


def parse_flows(text: str) -> tuple[int, set[str]]:
    """``hubble observe -o jsonpb`` (one GetFlowsResponse per line) -> (flows, nodes seen)."""
    flows, nodes = 0, set()
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        flow = item.get("flow") if isinstance(item, dict) else None
        if isinstance(flow, dict):
            flows += 1
            node = flow.get("node_name") or item.get("node_name")
            if node:
                nodes.add(str(node))
    return flows, nodes


# Where the Cilium chart mounts the Hubble server's certificate and CA in the agent (the
# ``hubble-tls`` volume: hubble-server-certs' ca.crt, tls.crt, tls.key).
AGENT_HUBBLE_TLS = "/var/lib/cilium/tls/hubble"


def observe_argv(relay: dict[str, Any], address: str, last: int) -> list[str]:
    """The ``hubble observe`` command line that reads ``last`` flows through the relay at ``address``."""
    host = f"[{address}]" if ":" in address else address
    argv = ["hubble", "observe", "--server", f"{host}:{relay['port']}", "--last", str(last), "-o", "jsonpb"]
    if relay.get("tls"):
        argv += ["--tls", "--tls-ca-cert-files", f"{AGENT_HUBBLE_TLS}/client-ca.crt",
                 "--tls-server-name", str(relay["serverName"])]
        if relay.get("mtls"):
            argv += ["--tls-client-cert-file", f"{AGENT_HUBBLE_TLS}/server.crt",
                     "--tls-client-key-file", f"{AGENT_HUBBLE_TLS}/server.key"]
    return argv


def batch_script(url: str, n: int) -> str:
    return (
        f"i=0; while [ $i -lt {n} ]; do "
        f"curl -s -m 3 {url} || echo {FAILED} rc=$?; echo; i=$((i+1)); done"
    )


# ----------------------------------------------------------------------------- judging
def judge_mesh(expected: list[str], agents: dict[str, dict[str, bool]]) -> tuple[bool, str]:
    if not agents:
        return False, "no Cilium agent pods found"
    want = set(expected)
    problems = []
    for pod, seen in sorted(agents.items()):
        missing = want - set(seen)
        extra = set(seen) - want
        not_ready = sorted(n for n, ready in seen.items() if n in want and not ready)
        if missing or extra or not_ready:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(sorted(missing))}")
            if extra:
                parts.append(f"unexpected {', '.join(sorted(extra))}")
            if not_ready:
                parts.append(f"not ready {', '.join(not_ready)}")
            problems.append(f"{pod}: {'; '.join(parts)}")
    if problems:
        return False, " | ".join(problems)
    names = ", ".join(sorted(want)) or "no remote clusters (none expected)"
    return True, f"{names} ready on {len(agents)}/{len(agents)} agents"


def judge_spread(counts: Counter[str], failed: int, expected: list[str], *, all_required: bool) -> tuple[bool, str]:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no replies"
    detail = f"{shown}; failed={failed}; expected {'all of' if all_required else 'only'} {', '.join(expected)}"
    if failed:
        return False, detail
    if set(counts) - set(expected):
        return False, detail
    if all_required and set(expected) - set(counts):
        return False, detail
    return bool(counts), detail


# ----------------------------------------------------------------------------- kubectl
class Kubectl:
    """kubectl against one cluster's kubeconfig (written to a private temp file)."""

    def __init__(self, kubeconfigs: dict[str, str], binary: str | None = None):
        self.binary = binary or os.environ.get("KINDMESH_KUBECTL", "kubectl")
        self._dir = tempfile.TemporaryDirectory(prefix="kindmesh-verify-")
        self.paths: dict[str, str] = {}
        for name, text in kubeconfigs.items():
            path = Path(self._dir.name) / f"{name}.kubeconfig"
            path.write_text(text)
            path.chmod(0o600)
            self.paths[name] = str(path)

    def __call__(self, cluster: str, args: list[str], timeout: float) -> Result:
        cmd = [self.binary, "--kubeconfig", self.paths[cluster], "--request-timeout=30s", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Result(124, "", f"timed out after {timeout:.0f}s: {' '.join(args[:6])}")
        except FileNotFoundError:
            return Result(127, "", f"{self.binary} not found: install kubectl")
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def close(self) -> None:
        self._dir.cleanup()


# ----------------------------------------------------------------------------- checks
def _batch(run: Runner, cluster: str, ns: str, source: str, service: str, n: int) -> tuple[Counter[str], int, str]:
    url = f"http://{service}.{ns}.svc.cluster.local/"
    res = run(cluster, ["-n", ns, "exec", f"deploy/{source}", "--", "sh", "-c", batch_script(url, n)], 60 + 4 * n)
    if res.rc != 0 and not res.out:
        return Counter(), n, f"kubectl exec deploy/{source}: {_said(res)}"
    counts, failed = parse_replies(res.out)
    return counts, failed, ""


def check_mesh(run: Runner, c: dict[str, Any], opts: Options) -> Check:
    deadline = opts.clock() + opts.mesh_timeout
    detail = ""
    attempt = 0
    while True:
        errors: list[str] = []
        pods = run(c["name"], ["-n", "kube-system", "get", "pods", "-l", "k8s-app=cilium",
                               "-o", "jsonpath={.items[*].metadata.name}"], 60)
        if pods.rc != 0:
            errors.append(f"kubectl get pods: {_said(pods)}")
        agents: dict[str, dict[str, bool]] = {}
        for pod in pods.out.split() if pods.rc == 0 else []:
            res = run(c["name"], ["-n", "kube-system", "exec", pod, "-c", "cilium-agent", "--",
                                  "cilium-dbg", "status", "-o", "json"], 60)
            if res.rc != 0:
                errors.append(f"kubectl exec {pod}: {_said(res)}")
            try:
                agents[pod] = parse_mesh_status(res.out) if res.rc == 0 else {}
            except ValueError:
                agents[pod] = {}
        ok, detail = judge_mesh(c["peers"], agents)
        if errors and not ok:
            detail = f"{detail} | {errors[-1]}"
        if ok or opts.clock() >= deadline:
            return Check(c["name"], "mesh: remote clusters", ok, detail)
        opts.log(f"{c['name']}: waiting for clustermesh ({detail})")
        opts.pause(attempt, deadline)
        attempt += 1


def check_flows(run: Runner, c: dict[str, Any], opts: Options) -> Check | None:
    """Flows read through the cluster's Hubble Relay (None: the cluster has no relay)."""
    relay = c.get("relay")
    if not relay:
        return None
    name = f"hubble: flows via relay ({'mTLS' if relay.get('mtls') else 'TLS' if relay.get('tls') else 'plaintext'})"
    deadline = opts.clock() + opts.flows_timeout
    attempt = 0
    while True:
        ok, detail = _read_flows(run, c["name"], relay, opts)
        if ok or opts.clock() >= deadline:
            return Check(c["name"], name, ok, detail)
        opts.log(f"{c['name']}: waiting for flows through the Hubble Relay ({detail})")
        opts.pause(attempt, deadline)
        attempt += 1


def _read_flows(run: Runner, cluster: str, relay: dict[str, Any], opts: Options) -> tuple[bool, str]:
    svc = run(cluster, ["-n", "kube-system", "get", "service", "hubble-relay", "-o", "jsonpath={.spec.clusterIP}"], 60)
    address = svc.out.strip()
    if svc.rc != 0 or not address or address == "None":
        return False, f"kubectl get service hubble-relay: {_said(svc) if svc.rc else 'no cluster IP'}"
    res = run(cluster, ["-n", "kube-system", "exec", "ds/cilium", "-c", "cilium-agent", "--",
                        *observe_argv(relay, address, opts.flows_last)], 90)
    flows, nodes = parse_flows(res.out)
    where = f"{address}:{relay['port']}"
    if res.rc != 0 and not flows:
        return False, f"hubble observe --server {where}: {_said(res)}"
    if not flows:
        return False, f"hubble observe --server {where}: no flows"
    how = f"TLS verified against the mesh CA as {relay['serverName']}" if relay.get("tls") else "plaintext"
    return True, f"{flows} flows from {len(nodes)} node(s) via {where}, {how}"


def _said(res: Result) -> str:
    """kubectl's own words (last line of stderr, else stdout), bounded."""
    lines = [ln for ln in (res.err or res.out or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit {res.rc}, no output")[:500]


def check_global(run: Runner, c: dict[str, Any], ns: str, opts: Options) -> Check:
    expected = c["expect"]["echo-global"]
    n = max(opts.requests, 10 * len(expected))  # enough that every cluster shows up
    counts, failed, err = _batch(run, c["name"], ns, "client", "echo-global", n)
    ok, detail = judge_spread(counts, failed, expected, all_required=True)
    return Check(c["name"], f"global: {n} requests", ok, err or detail)


def _converge(run: Runner, c: dict[str, Any], ns: str, expected: list[str], opts: Options,
              all_required: bool) -> tuple[bool, str]:
    detail = ""
    for attempt in range(opts.converge_rounds):
        if attempt:
            opts.pause(attempt - 1)
        counts, failed, err = _batch(run, c["name"], ns, "client", "echo", opts.requests)
        ok, detail = judge_spread(counts, failed, expected, all_required=all_required)
        detail = err or detail
        if ok:
            return True, detail
    return False, detail


def check_affinity(run: Runner, c: dict[str, Any], ns: str, opts: Options) -> list[Check]:
    name, affinity = c["name"], c["affinity"]
    if affinity == "remote":
        ok, detail = _converge(run, c, ns, c["expect"]["echo"], opts, all_required=False)
        return [Check(name, "affinity remote: goes to peers", ok, detail)]
    if affinity != "local":
        return []
    checks = []
    ok, detail = _converge(run, c, ns, [name], opts, all_required=True)
    checks.append(Check(name, "affinity local: stays local", ok, detail))
    if not c["failover"]:
        checks.append(Check(name, "affinity local: failover", True, "skipped: no peer shares its backends"))
        return checks
    scaled = run(name, ["-n", ns, "scale", "deploy/echo", "--replicas=0"], 60)
    try:
        if scaled.rc != 0:
            checks.append(Check(name, "affinity local: failover", False, f"scale to 0 failed: {scaled.err.strip()}"))
            return checks
        run(name, ["-n", ns, "wait", "--for=delete", "pod", "-l", "app=echo", "--timeout=120s"], 150)
        ok, detail = _converge(run, c, ns, c["failover"], opts, all_required=False)
        checks.append(Check(name, "affinity local: fails over when local is 0", ok, detail))
    finally:
        run(name, ["-n", ns, "scale", "deploy/echo", "--replicas=1"], 60)
        run(name, ["-n", ns, "rollout", "status", "deploy/echo", "--timeout=180s"], 200)
    ok, detail = _converge(run, c, ns, [name], opts, all_required=True)
    checks.append(Check(name, "affinity local: back to local when restored", ok, detail))
    return checks


def check_policy(run: Runner, c: dict[str, Any], ns: str, global_check: Check) -> list[Check]:
    counts, failed, err = _batch(run, c["name"], ns, "intruder", "echo-global", 3)
    dropped = failed == 3 and not counts
    detail = "3/3 requests dropped" if dropped else f"intruder got replies: {dict(counts)} {err}".strip()
    remote = [p for p in c["expect"]["echo-global"] if p != c["name"]]
    allowed = Check(c["name"], "policy: allowed client passes (cross-cluster)", global_check.ok,
                    f"client reached {', '.join(remote) or 'local only'}: {global_check.detail}")
    return [Check(c["name"], "policy: intruder dropped", dropped, detail), allowed]


def run_checks(spec: dict[str, Any], run: Runner, opts: Options | None = None) -> list[Check]:
    opts = opts or Options()
    ns = spec["namespace"]
    checks: list[Check] = []
    for c in spec["clusters"]:
        checks.append(check_mesh(run, c, opts))
        flows = check_flows(run, c, opts)
        if flows is not None:
            checks.append(flows)
    if not spec.get("demo"):
        return checks
    for c in spec["clusters"]:
        glob = check_global(run, c, ns, opts)
        checks.append(glob)
        checks += check_affinity(run, c, ns, opts)
        if spec.get("policy"):
            checks += check_policy(run, c, ns, glob)
    return checks


def render(checks: list[Check]) -> str:
    rows = [("CLUSTER", "CHECK", "RESULT", "DETAIL")] + [
        (c.cluster, c.name, "PASS" if c.ok else "FAIL", c.detail) for c in checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    passed = sum(c.ok for c in checks)
    lines.append(f"{passed} passed, {len(checks) - passed} failed")
    return "\n".join(lines)


class VerifyError(SystemExit):
    """A one-line reason to stop (printed by the interpreter on stderr, exit 1, no traceback)."""

    def __init__(self, message: str):
        super().__init__(f"kindmesh verify: {message}")


def stack_outputs(stack: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack],
            capture_output=True, text=True, check=False, timeout=120,
        )
    except FileNotFoundError:
        raise VerifyError("the pulumi CLI is not on PATH: run `make doctor` "
                          "(install: https://www.pulumi.com/docs/iac/download-install/)") from None
    except (OSError, subprocess.TimeoutExpired) as err:
        raise VerifyError(f"cannot run pulumi: {err}") from None
    if proc.returncode != 0:
        said = _said(Result(proc.returncode, proc.stdout, proc.stderr))
        if "no stack named" in said.lower() or "not found" in said.lower():
            raise VerifyError(f"stack {stack!r} does not exist ({said}): run `make up STACK={stack}` first")
        raise VerifyError(f"cannot read outputs of stack {stack!r}: {said}")
    return _json(proc.stdout, f"`pulumi stack output` of {stack!r}")


def _json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise VerifyError(f"{source} is not JSON") from None
    if not isinstance(data, dict):
        raise VerifyError(f"{source} is not a JSON object")
    return data


def _spec_and_kubeconfigs(outputs: dict[str, Any], stack: str) -> tuple[dict[str, Any], dict[str, str]]:
    spec, kubeconfigs = outputs.get("verification"), outputs.get("kubeconfigs")
    if not isinstance(spec, dict) or not isinstance(kubeconfigs, dict) or not kubeconfigs:
        missing = [k for k, v in (("verification", spec), ("kubeconfigs", kubeconfigs)) if not v]
        raise VerifyError(f"stack {stack!r} has no {' or '.join(missing) or 'usable'} output: "
                          f"run `make up STACK={stack}` first")
    return spec, kubeconfigs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a live kindmesh stack")
    parser.add_argument("--stack", default=os.environ.get("STACK", "dev"))
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--outputs", help="read stack outputs from this JSON file instead of pulumi")
    parser.add_argument("--outputs-env", help="read stack outputs (JSON) from this environment variable")
    args = parser.parse_args(argv)
    if args.outputs_env:
        outputs = _json(os.environ.get(args.outputs_env, ""), f"${args.outputs_env}")
    elif args.outputs:
        try:
            outputs = _json(Path(args.outputs).read_text(), args.outputs)
        except OSError as err:
            raise VerifyError(f"cannot read {args.outputs}: {err.strerror}") from None
    else:
        outputs = stack_outputs(args.stack)
    spec, kubeconfigs = _spec_and_kubeconfigs(outputs, args.stack)
    binary = os.environ.get("KINDMESH_KUBECTL", "kubectl")
    if shutil.which(binary) is None:
        raise VerifyError(f"{binary} not found: install kubectl (https://kubernetes.io/docs/tasks/tools/#kubectl)")
    kubectl = Kubectl(kubeconfigs)
    try:
        checks = run_checks(spec, kubectl, Options(requests=args.requests,
                                                   log=lambda m: print(m, file=sys.stderr)))
    finally:
        kubectl.close()
    print(render(checks))
    return 0 if checks and all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
