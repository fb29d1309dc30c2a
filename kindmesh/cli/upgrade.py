"""`make upgrade`: move a running mesh to another Cilium version one cluster (or wave) at a time.

    python -m kindmesh.cli.upgrade --stack dev --cilium 1.20.0 [--clusters "1 2" | --waves "1;2,3"]
                                   [--cwd DIR] [--timeout SECONDS]

Clusters are named by id or name (default: every cluster not yet on the version, one at a
time, by id). For each step (a wave of one or more clusters):

1. ``pulumi config set --path 'kindmesh:clusters[i].cilium.version' <version>`` for each
   cluster of the wave (written to ``Pulumi.<stack>.yaml``);
2. ``pulumi up --yes --stack <stack>``: only those clusters' Cilium releases (and their
   gates, and the host's image pull) change;
3. the readiness gates and ClusterMesh status of *every* cluster, through the Kubernetes API
   with the kubeconfigs the stack exports (``kubeconfigs`` output): the Cilium DaemonSets
   and Deployments rolled out, the agent and clustermesh-apiserver at the version that
   cluster is configured for, and the ``cilium-clustermesh`` Secret listing exactly its
   planned peers. Polled under one deadline with bounded, jittered backoff.

It stops at the first failure: the mesh is then in a valid mixed state (Cilium supports
one minor of skew) and the exact commands to continue or roll back are printed. A
downgrade works the same way. When every cluster of the stack is on the version, the stack
file holds it once (``kindmesh:cilium.version``), the per-cluster overrides are removed, and
``pulumi preview --expect-no-changes`` proves that rewrite changes nothing.

Needs only ``pulumi`` on PATH (or ``$PULUMI``) and its usual environment (PULUMI_BACKEND_URL,
the passphrase); no docker, no cilium CLI. No ``pulumi`` import.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from kindmesh.core.versions import DEFAULT_CILIUM, check_skew, resolve_cilium

NS = "kindmesh"
STACK_KEY = f"{NS}:cilium.version"
DEFAULT_TIMEOUT = 900.0


class UpgradeError(Exception):
    """A reason to stop before anything was changed (exit 2)."""


# ----------------------------------------------------------------------------- the stack file
@dataclass(frozen=True)
class Member:
    index: int  # position in kindmesh:clusters
    name: str
    id: int
    own: str | None  # clusters[i].cilium.version
    cilium_keys: tuple[str, ...]  # keys of clusters[i].cilium (to leave no empty mapping behind)

    @property
    def key(self) -> str:
        return f"{NS}:clusters[{self.index}].cilium.version"


@dataclass(frozen=True)
class StackFile:
    path: Path
    stack_version: str | None  # kindmesh:cilium.version as written (None: the default)
    members: tuple[Member, ...]

    def version_of(self, m: Member) -> str:
        return m.own or self.stack_version or DEFAULT_CILIUM

    def find(self, token: str) -> Member:
        for m in self.members:
            if token == m.name or (token.isdigit() and int(token) == m.id):
                return m
        known = ", ".join(f"{m.id} ({m.name})" for m in self.members)
        raise UpgradeError(f"no cluster {token!r} in {self.path.name}; clusters by id: {known}")


def read_stack_file(cwd: Path, stack: str) -> StackFile:
    path = cwd / f"Pulumi.{stack}.yaml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise UpgradeError(f"cannot read {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise UpgradeError(f"{path.name} is not valid YAML: {str(err)[:300]}") from None
    config = data.get("config") if isinstance(data, dict) else None
    config = config if isinstance(config, dict) else {}
    clusters = config.get(f"{NS}:clusters")
    if not isinstance(clusters, list) or not clusters:
        raise UpgradeError(f"{path.name} lists no {NS}:clusters")
    cilium = config.get(f"{NS}:cilium")
    stack_version = cilium.get("version") if isinstance(cilium, dict) else None
    members = []
    for i, c in enumerate(clusters):
        cid = c.get("id") if isinstance(c, dict) else None
        if isinstance(cid, str) and cid.strip().isdigit():
            cid = int(cid)
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(cid, int):
            raise UpgradeError(f"{NS}:clusters[{i}] has no name and id; run `make doctor STACK={stack}`")
        own: dict[str, Any] = c["cilium"] if isinstance(c.get("cilium"), dict) else {}
        version = own.get("version")
        members.append(Member(i, c["name"], cid, str(version) if version is not None else None,
                              tuple(own)))
    return StackFile(path, str(stack_version) if stack_version is not None else None, tuple(members))


# ----------------------------------------------------------------------------- pulumi
@dataclass
class Ran:
    rc: int
    out: str
    err: str


class Pulumi:
    """The pulumi CLI (``$PULUMI`` or ``pulumi``) in the project directory, one stack."""

    def __init__(self, stack: str, cwd: Path, command: str | None = None,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
        self.stack, self.cwd, self.log = stack, cwd, log
        self.argv0 = shlex.split(command or os.environ.get("PULUMI") or "pulumi")

    def run(self, *args: str, show: bool = True, stream: bool = False) -> Ran:
        argv = [*self.argv0, *args, "--stack", self.stack]
        if show:
            self.log("$ " + " ".join(shlex.quote(a) for a in ["pulumi", *args, "--stack", self.stack]))
        try:
            if stream:  # `up` shows its progress as it goes
                proc = subprocess.run(argv, cwd=self.cwd, check=False)  # output straight to the terminal
                return Ran(proc.returncode, "", "")
            done = subprocess.run(argv, cwd=self.cwd, check=False, capture_output=True, text=True)
        except FileNotFoundError:
            raise UpgradeError(f"{self.argv0[0]} not found: install the Pulumi CLI "
                               "(https://www.pulumi.com/docs/iac/download-install/) or set $PULUMI") from None
        return Ran(done.returncode, done.stdout, done.stderr)

    def set_version(self, key: str, version: str) -> Ran:
        return self.run("config", "set", "--path", key, version)

    def rm(self, key: str) -> Ran:
        return self.run("config", "rm", "--path", key)

    def up(self) -> Ran:
        return self.run("up", "--yes", stream=True)

    def expect_no_changes(self) -> Ran:
        return self.run("preview", "--expect-no-changes", stream=True)

    def output(self, name: str, secret: bool = False) -> Any:
        args = ["stack", "output", name, "--json"] + (["--show-secrets"] if secret else [])
        res = self.run(*args, show=False)
        if res.rc != 0:
            raise UpgradeError(f"cannot read output {name!r} of stack {self.stack!r}: "
                               f"{(res.err or res.out).strip()[-300:]}; run `make up STACK={self.stack}` first")
        try:
            return json.loads(res.out or "null")
        except json.JSONDecodeError:
            raise UpgradeError(f"output {name!r} of stack {self.stack!r} is not JSON") from None


# ----------------------------------------------------------------------------- checks
class Checks(Protocol):
    def __call__(self, expected: Mapping[str, str | None], deadline: float) -> list[str]:
        """Problems seen in the clusters (empty: all healthy); ``expected``: cluster -> the Cilium
        version its agents must run (None: any)."""
        ...


def image_version(image: str) -> str | None:
    """``quay.io/cilium/cilium:v1.20.0@sha256:…`` -> ``1.20.0``."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[colon + 1:].lstrip("v") if colon > slash else None


WORKLOADS = [  # the rollout gate's workloads (kindmesh.core.render.rollout_workloads); Hubble optional here
    {"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium", "optional": False},
    {"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium-envoy", "optional": True},
    {"kind": "Deployment", "namespace": "kube-system", "name": "cilium-operator", "optional": False},
    {"kind": "Deployment", "namespace": "kube-system", "name": "clustermesh-apiserver", "optional": False},
    {"kind": "Deployment", "namespace": "kube-system", "name": "hubble-relay", "optional": True},
    {"kind": "Deployment", "namespace": "kube-system", "name": "hubble-ui", "optional": True},
]
DS_PATH = "/apis/apps/v1/namespaces/kube-system/daemonsets/cilium"
APISERVER_PATH = "/apis/apps/v1/namespaces/kube-system/deployments/clustermesh-apiserver"
MESH_SECRET_PATH = "/api/v1/namespaces/kube-system/secrets/cilium-clustermesh"


def mesh_state(api: Any, expected: str | None, peers: Sequence[str]) -> str | None:
    """What is wrong with one cluster's Cilium version and ClusterMesh config (None: fine)."""
    from kindmesh.deploy.kubeapi import KubeError

    try:
        ds = api.get(DS_PATH).body
        dep = api.get(APISERVER_PATH).body
        secret = api.get(MESH_SECRET_PATH).body
    except KubeError as err:
        return str(err)
    problems = []
    for what, obj, repo in (("cilium agents", ds, "cilium/cilium"),
                            ("clustermesh-apiserver", dep, "clustermesh-apiserver")):
        containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        found = sorted({image_version(str(c.get("image", ""))) or "?" for c in containers
                        if repo in str(c.get("image", ""))})
        if expected is not None and found != [expected]:
            problems.append(f"{what} run {', '.join(found) or 'no image'} (expected {expected})")
    keys = {k for k in (secret.get("data") or {}) if "." not in k}
    missing, extra = sorted(set(peers) - keys), sorted(keys - set(peers))
    if missing or extra:
        problems.append("cilium-clustermesh lists " + (", ".join(sorted(keys)) or "no peer")
                        + f" (expected {', '.join(sorted(peers)) or 'none'})")
    return "; ".join(problems) or None


@dataclass
class KubeChecks:
    """Every cluster through the Kubernetes API, with the kubeconfigs the stack exports."""

    kubeconfigs: Mapping[str, str]
    peers: Mapping[str, Sequence[str]]
    connect: Callable[[str], Any] = field(default=lambda kubeconfig: _client(kubeconfig))
    clock: Any = None
    backoff: tuple[float, float] = (2.0, 30.0)
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)

    def __call__(self, expected: Mapping[str, str | None], deadline: float) -> list[str]:
        from kindmesh.deploy.gates import Backoff, Clock, GateError, wait_for_rollouts

        clock = self.clock or Clock()
        problems = []
        for name in sorted(expected):
            if name not in self.kubeconfigs:
                problems.append(f"{name}: no kubeconfig in the stack's outputs")
                continue
            try:
                api = self.connect(self.kubeconfigs[name])
            except ValueError as err:  # kubeapi's KubeconfigError / ClientSetupError
                problems.append(f"{name}: cannot use its kubeconfig from the stack's outputs: {err}")
                continue
            try:
                try:
                    wait_for_rollouts(api, name, WORKLOADS, timeout=max(0.0, deadline - clock.now()), clock=clock)
                except GateError as err:
                    problems.append(f"{name}: {err}")
                    continue
                backoff = Backoff(*self.backoff, clock.random)
                while True:
                    seen = mesh_state(api, expected[name], self.peers.get(name, ()))
                    if seen is None:
                        self.log(f"  {name}: ready, Cilium {expected[name] or '(any)'}, ClusterMesh peers "
                                 f"{', '.join(self.peers.get(name, ())) or 'none'}")
                        break
                    left = deadline - clock.now()
                    if left <= 0:
                        problems.append(f"{name}: {seen} (deadline reached)")
                        break
                    clock.sleep(min(backoff.delay(), left))
            finally:
                close = getattr(api, "close", None)
                if close is not None:
                    close()
        return problems


def _client(kubeconfig: str) -> Any:
    from kindmesh.deploy.kubeapi import KubeClient

    return KubeClient(kubeconfig)


def stack_checks(pulumi: Pulumi) -> Checks:
    kubeconfigs = pulumi.output("kubeconfigs", secret=True) or {}
    verification = pulumi.output("verification") or {}
    peers = {c["name"]: list(c.get("peers") or []) for c in verification.get("clusters") or []
             if isinstance(c, dict) and "name" in c}
    if not isinstance(kubeconfigs, dict) or not kubeconfigs:
        raise UpgradeError(f"stack {pulumi.stack!r} exports no kubeconfigs: run `make up STACK={pulumi.stack}`")
    return KubeChecks(kubeconfigs, peers, log=pulumi.log)


# ----------------------------------------------------------------------------- the plan of steps
def parse_steps(sf: StackFile, target: str, clusters: str | None, waves: str | None) -> list[list[Member]]:
    if clusters and waves:
        raise UpgradeError("give CLUSTERS or WAVES, not both")
    if waves:
        steps = [[sf.find(t) for t in w.replace(",", " ").split()] for w in waves.split(";") if w.strip()]
    elif clusters:
        steps = [[sf.find(t)] for t in clusters.replace(",", " ").split()]
    else:
        steps = [[m] for m in sorted(sf.members, key=lambda m: m.id) if sf.version_of(m) != target]
    seen: set[int] = set()
    for wave in steps:
        for m in wave:
            if m.index in seen:
                raise UpgradeError(f"cluster {m.name} (id {m.id}) is listed twice")
            seen.add(m.index)
    return steps


def check_path(sf: StackFile, target: str, steps: list[list[Member]]) -> None:
    """Every state the upgrade passes through must be a valid mesh (skew at most one minor)."""
    current = {m.index: sf.version_of(m) for m in sf.members}
    for n, wave in enumerate(steps, 1):
        for m in wave:
            current[m.index] = target
        problem = check_skew([(sf.members[i].key, v) for i, v in sorted(current.items())])
        if problem:
            raise UpgradeError(f"step {n} would leave the mesh invalid: {problem}")


# ----------------------------------------------------------------------------- orchestration
@dataclass
class Upgrade:
    pulumi: Pulumi
    target: str
    steps: list[list[Member]]
    timeout: float = DEFAULT_TIMEOUT
    checks: Checks | None = None
    clock: Callable[[], float] = time.monotonic
    waves_given: bool = False
    out: Callable[[str], None] = print

    def command(self, version: str, members: Sequence[Sequence[Member]]) -> str:
        stack = self.pulumi.stack
        if self.waves_given and any(len(w) > 1 for w in members):
            spec = ";".join(",".join(str(m.id) for m in w) for w in members)
            return f'make upgrade CILIUM={version} STACK={stack} WAVES="{spec}"'
        ids = " ".join(str(m.id) for w in members for m in w)
        return f'make upgrade CILIUM={version} STACK={stack} CLUSTERS="{ids}"'

    def stop(self, sf: StackFile, done: list[list[Member]], failed: list[Member], rest: list[list[Member]],
             why: str) -> int:
        now = read_stack_file(self.pulumi.cwd, self.pulumi.stack)
        state = ", ".join(f"{m.name}={now.version_of(m)}" for m in now.members)
        self.out(f"kindmesh upgrade stopped: {why}")
        self.out(f"  the mesh is in a valid mixed state: {state}")
        self.out(f"  continue:  {self.command(self.target, [failed, *rest])}")
        touched = [m for w in done for m in w] + failed
        by_version: dict[str, list[Member]] = {}
        base = sf.stack_version or DEFAULT_CILIUM
        for m in reversed(touched):
            # a cluster already set to the target when this run began (a continued run): the mesh's
            # stack-wide version is where it came from
            before = sf.version_of(m) if sf.version_of(m) != self.target else base
            by_version.setdefault(before if before != self.target else "<previous version>", []).append(m)
        for version, members in by_version.items():
            self.out(f"  roll back: {self.command(version, [[m] for m in members])}")
        return 1

    def run(self) -> int:
        cwd, stack = self.pulumi.cwd, self.pulumi.stack
        sf = read_stack_file(cwd, stack)
        deadline_for = lambda: self.clock() + self.timeout  # noqa: E731 - one deadline per check round
        checks = self.checks or stack_checks(self.pulumi)
        first = {m.index for m in (self.steps[0] if self.steps else [])}
        # Before anything changes: every cluster outside the first step is healthy and runs what
        # the stack file says (else the first `up` would move it too). The first step's clusters
        # may be anything (a continued run repeats the step that failed).
        expected: dict[str, str | None] = {m.name: sf.version_of(m) for m in sf.members if m.index not in first}
        self.out(f"kindmesh upgrade: checking the clusters of stack {stack!r}"
                 + (" outside the first step" if first else ""))
        problems = checks(expected, deadline_for()) if expected else []
        if problems:
            drift = [m for m in sf.members if m.index not in first and any(p.startswith(f"{m.name}:") and
                                                                            "expected" in p for p in problems)]
            self.out("kindmesh upgrade: nothing changed; the mesh is not healthy as configured:")
            for p in problems:
                self.out(f"  - {p}")
            unpinned = [m for m in drift if m.own is None and sf.stack_version is None]
            if unpinned:  # the stack follows kindmesh's default, which moved since the clusters were made
                self.out(f"  {sf.path.name} sets no {STACK_KEY}, so it follows kindmesh's default ({DEFAULT_CILIUM}); "
                         f"pin what the clusters run first: pulumi config set --stack {stack} --path "
                         f"'{STACK_KEY}' <running version>, then run this command again")
            for m in drift:
                if m not in unpinned:
                    self.out(f"  {m.name} runs another version than {sf.path.name} says: pin what it runs first: "
                             f"pulumi config set --stack {stack} --path '{m.key}' <running version>")
            return 1
        done: list[list[Member]] = []
        for n, wave in enumerate(self.steps, 1):
            names = ", ".join(f"{m.name} (id {m.id})" for m in wave)
            self.out(f"kindmesh upgrade: step {n}/{len(self.steps)}: {names} -> Cilium {self.target}")
            for m in wave:
                res = self.pulumi.set_version(m.key, self.target)
                if res.rc != 0:
                    return self.stop(sf, done, wave, self.steps[n:], f"`pulumi config set` failed: "
                                     f"{(res.err or res.out).strip()[-300:]}")
            if self.pulumi.up().rc != 0:
                return self.stop(sf, done, wave, self.steps[n:], f"`pulumi up` failed in step {n} ({names})")
            now = read_stack_file(cwd, stack)
            problems = checks({m.name: now.version_of(m) for m in now.members}, deadline_for())
            if problems:
                return self.stop(sf, done, wave, self.steps[n:], f"step {n} ({names}) left the mesh unhealthy:\n"
                                 + "\n".join(f"    - {p}" for p in problems))
            done.append(wave)
        return self.finish()

    def finish(self) -> int:
        sf = read_stack_file(self.pulumi.cwd, self.pulumi.stack)
        versions = {sf.version_of(m) for m in sf.members}
        if sf.stack_version == self.target and all(m.own is None for m in sf.members):
            self.out(f"kindmesh upgrade: the stack file holds Cilium {self.target} once; nothing to rewrite")
            return 0
        if versions != {self.target}:
            state = ", ".join(f"{m.name}={sf.version_of(m)}" for m in sf.members)
            self.out(f"kindmesh upgrade: steps done; the mesh stays mixed as asked: {state}")
            return 0
        self.out(f"kindmesh upgrade: every cluster runs Cilium {self.target}: the stack file now holds it once")
        steps = [self.pulumi.set_version(STACK_KEY, self.target)]
        for m in sf.members:
            if m.own is not None:
                steps.append(self.pulumi.rm(m.key))
                if set(m.cilium_keys) == {"version"}:  # leave no empty `cilium: {}` behind
                    steps.append(self.pulumi.rm(f"{NS}:clusters[{m.index}].cilium"))
        failed = [r for r in steps if r.rc != 0]
        if failed:
            self.out(f"kindmesh upgrade: rewriting the stack file failed: {(failed[0].err or failed[0].out).strip()}; "
                     f"the clusters are upgraded; set {STACK_KEY} to {self.target} and remove the "
                     "clusters[].cilium.version keys by hand")
            return 1
        if self.pulumi.expect_no_changes().rc != 0:
            self.out("kindmesh upgrade: `pulumi preview --expect-no-changes` saw changes after the stack file "
                     f"rewrite; nothing was applied: inspect `pulumi preview --diff --stack {self.pulumi.stack}`")
            return 1
        self.out("kindmesh upgrade: done; `pulumi preview` shows no changes")
        return 0


def main(argv: list[str] | None = None, checks: Checks | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kindmesh.cli.upgrade",
        description="Move a running kindmesh mesh to another Cilium version, one cluster (or wave) at a time")
    parser.add_argument("--stack", default=os.environ.get("STACK", "dev"), help="the Pulumi stack (default dev)")
    parser.add_argument("--cilium", required=True, help="the Cilium version to move to (up or down), e.g. 1.20.0")
    parser.add_argument("--clusters", help='clusters by id or name, one step each, in this order: "1 2"')
    parser.add_argument("--waves", help='waves of clusters, one step each: "1;2,3"')
    parser.add_argument("--cwd", default=".", help="the Pulumi project directory (holds Pulumi.<stack>.yaml)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds every cluster has to become ready after each step (default 900)")
    args = parser.parse_args(argv)
    cwd = Path(args.cwd).resolve()
    try:
        resolved, problem, warning = resolve_cilium(args.cilium, "CILIUM")
        if problem or resolved is None:
            raise UpgradeError(problem or "no version")
        if warning:
            print(f"kindmesh upgrade: warning: {warning}", file=sys.stderr)
        sf = read_stack_file(cwd, args.stack)
        steps = parse_steps(sf, args.cilium, args.clusters, args.waves)
        if not steps:  # still checked: the clusters must run what the file says before it is rewritten
            print(f"kindmesh upgrade: every cluster of {args.stack!r} is configured for Cilium {args.cilium}")
        check_path(sf, args.cilium, steps)
        up = Upgrade(Pulumi(args.stack, cwd), args.cilium, steps, args.timeout, checks,
                     waves_given=bool(args.waves))
        return up.run()
    except UpgradeError as err:
        print(f"kindmesh upgrade: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
