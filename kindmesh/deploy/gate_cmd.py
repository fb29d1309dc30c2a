"""Run one readiness gate as its own process (what the gates' ``local.Command`` executes).

    python -m kindmesh.deploy.gate_cmd rollout|metallb-webhook|loadbalancer

Input comes from the environment, so nothing secret is on a command line:

- ``KINDMESH_GATE_KUBECONFIG``: the cluster's kubeconfig (a secret in Pulumi state);
- ``KINDMESH_GATE_SPEC``: JSON ``{"cluster", "timeout", "workloads": [...]}`` for ``rollout``,
  ``{"cluster", "timeout", "pool": {...}, "workloads": [...]}`` for ``metallb-webhook``
  (``workloads`` optional there: MetalLB's controller and speakers, rolled out first),
  ``{"cluster", "timeout", "services": [{"namespace", "name", "ip"}]}`` for ``loadbalancer``
  (the Services got their planned LoadBalancer IPs).

Exit 0 with one line on stdout when the condition holds; otherwise exit 1 (the gate
failed or timed out) or 2 (bad invocation) with one paragraph on stderr and no traceback.
Logging is at WARNING on stderr and never prints the kubeconfig or request headers. A
process timer ends the gate a little after its deadline even if a call hangs (e.g. an
exec credential plugin that never returns).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Mapping
from typing import Any

from kindmesh.deploy.gates import GateError, GateResult, wait_for_lb_ips, wait_for_metallb, wait_for_rollouts
from kindmesh.deploy.kubeapi import ClientSetupError, KubeClient, KubeconfigError, snippet

KUBECONFIG_ENV = "KINDMESH_GATE_KUBECONFIG"
SPEC_ENV = "KINDMESH_GATE_SPEC"
GATES = ("rollout", "metallb-webhook", "loadbalancer")
HARD_LIMIT_GRACE = 15.0
MAX_SPEC = 1024 * 1024


class UsageError(ValueError):
    pass


class _HardLimit(BaseException):
    pass


def read_spec(gate: str, environ: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    if gate not in GATES:
        raise UsageError(f"unknown gate {snippet(gate, 60)!r}; expected one of {', '.join(GATES)}")
    kubeconfig = environ.get(KUBECONFIG_ENV, "")
    if not kubeconfig.strip():
        raise UsageError(f"{KUBECONFIG_ENV} is not set")
    raw = environ.get(SPEC_ENV, "")
    if len(raw) > MAX_SPEC:
        raise UsageError(f"{SPEC_ENV} is larger than {MAX_SPEC} bytes")
    try:
        spec = json.loads(raw)
    except ValueError:
        raise UsageError(f"{SPEC_ENV} is not JSON") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), str):
        raise UsageError(f"{SPEC_ENV} must be an object with a 'cluster' name")
    timeout = spec.get("timeout")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 86400:
        raise UsageError(f"{SPEC_ENV}: 'timeout' must be a number of seconds (0 < timeout <= 86400)")
    if gate == "loadbalancer":
        services = spec.get("services")
        if not isinstance(services, list) or not services or not all(
            isinstance(s, dict) and isinstance(s.get("namespace"), str) and isinstance(s.get("name"), str)
            and _is_ipv4(s.get("ip"))
            for s in services
        ):
            raise UsageError(f"{SPEC_ENV}: 'services' must list {{namespace, name, ip: an IPv4 address}}")
        return kubeconfig, spec
    workloads = spec.get("workloads", [] if gate == "metallb-webhook" else None)
    if not isinstance(workloads, list) or not all(
        isinstance(w, dict) and w.get("kind") in ("DaemonSet", "Deployment")
        and isinstance(w.get("namespace"), str) and isinstance(w.get("name"), str)
        for w in workloads
    ):
        raise UsageError(f"{SPEC_ENV}: 'workloads' must list {{kind: DaemonSet|Deployment, namespace, name}}")
    if gate != "rollout":
        pool = spec.get("pool")
        if not (isinstance(pool, dict) and isinstance(pool.get("metadata"), dict)
                and isinstance(pool["metadata"].get("namespace"), str) and isinstance(pool.get("spec"), dict)
                and isinstance(pool.get("apiVersion"), str) and isinstance(pool.get("kind"), str)):
            raise UsageError(f"{SPEC_ENV}: 'pool' must be an IPAddressPool object")
    return kubeconfig, spec


def _is_ipv4(value: object) -> bool:
    import ipaddress

    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def run_gate(gate: str, kubeconfig: str, spec: dict[str, Any]) -> GateResult:
    cluster = spec["cluster"]
    try:
        client = KubeClient(kubeconfig)
    except KubeconfigError as err:
        raise GateError(f"the kubeconfig of cluster {cluster!r} cannot be used: it {err}") from None
    except ClientSetupError as err:
        raise GateError(f"cluster {cluster!r}: {err}. Check HTTPS_PROXY/NO_PROXY or the kubeconfig's proxy-url") from None
    try:
        if gate == "rollout":
            return wait_for_rollouts(client, cluster, spec["workloads"], timeout=float(spec["timeout"]))
        if gate == "loadbalancer":
            return wait_for_lb_ips(client, cluster, spec["services"], timeout=float(spec["timeout"]))
        return wait_for_metallb(client, cluster, spec["pool"], list(spec.get("workloads") or []),
                                timeout=float(spec["timeout"]))
    finally:
        client.close()


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="kindmesh gate: %(message)s", force=True)
    for noisy in ("urllib3", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    import os

    args = sys.argv[1:] if argv is None else argv
    env = os.environ if environ is None else environ
    configure_logging()
    if args and args[0] in ("-h", "--help"):
        print(f"usage: python -m kindmesh.deploy.gate_cmd {{{'|'.join(GATES)}}}\n"
              f"Waits for one readiness gate; the kubeconfig in ${KUBECONFIG_ENV}, the spec (JSON) in ${SPEC_ENV}.\n"
              "Run by the kindmesh program's command resources, not by hand.")
        return 0
    try:
        if len(args) != 1:
            raise UsageError(f"usage: python -m kindmesh.deploy.gate_cmd {{{'|'.join(GATES)}}}")
        kubeconfig, spec = read_spec(args[0], env)
    except UsageError as err:
        print(f"kindmesh gate: {err}", file=sys.stderr)
        return 2
    limit = float(spec["timeout"]) + HARD_LIMIT_GRACE

    def hard_limit(signum: int, frame: object) -> None:
        raise _HardLimit

    previous = signal.signal(signal.SIGALRM, hard_limit)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        result = run_gate(args[0], kubeconfig, spec)
    except GateError as err:
        print(str(err), file=sys.stderr)
        return 1
    except _HardLimit:
        print(f"the {args[0]} gate of cluster {spec['cluster']!r} did not finish within {limit:.0f}s "
              "(a call to the API server or a credential plugin hung)", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: still one paragraph, no traceback, no secrets
        print(f"the {args[0]} gate of cluster {spec['cluster']!r} failed unexpectedly: "
              f"{type(err).__name__}: {snippet(err)}", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    print(f"{args[0]} gate of cluster {spec['cluster']!r} passed after {result.attempts} check(s) in "
          f"{result.waited:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
