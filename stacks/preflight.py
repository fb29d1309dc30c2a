"""Host preflight: run before any resource is registered, report every problem at once.

Checks that docker answers, that ``kind`` is present and recent enough, that the
stack's docker subnet does not clash with a network that is not this stack's, that the
inotify limits allow several kind clusters, and that no kind cluster with one of the
planned names exists that this stack does not own (a cluster is this stack's when its
control-plane container is attached to the stack's own docker network; such a cluster,
left by an interrupted ``up``, is adopted or recreated by ``kindmesh.deploy.kindctl``, which
says which). It returns the host facts the program needs (the daemon's default MTU).

No ``pulumi`` import; talks to the CLIs through subprocess (tests put fakes on PATH).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kindmesh.core.model import StackPlan
from kindmesh.core.versions import KIND_NODE_IMAGES, MIN_KIND, fmt_release
from kindmesh.deploy import kindctl

__all__ = ["MIN_KIND", "installed_kind_version", "parse_kind_version"]
INOTIFY = {
    "max_user_watches": 524288,
    "max_user_instances": 512,
}
STACK_LABEL = "kindmesh.io/stack"


class PreflightError(RuntimeError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"kindmesh preflight found {len(problems)} problem(s) on this host:\n{body}")


@dataclass
class Host:
    """Where the preflight looks: the CLIs and /proc (overridable in tests)."""

    docker: str = field(default_factory=lambda: os.environ.get("KINDMESH_DOCKER", "docker"))
    kind: str = field(default_factory=lambda: os.environ.get("KINDMESH_KIND", "kind"))
    proc_sys: Path = Path("/proc/sys/fs/inotify")
    timeout: int = 60

    def run(self, *args: str) -> subprocess.CompletedProcess[str] | None:
        """None when the tool is not on PATH; exit 126 with a clear message when it cannot be
        started (permission denied, Exec format error, timeout); output decoded leniently."""
        try:
            return kindctl.run(list(args), timeout=self.timeout, check=False)
        except kindctl.ToolMissing:
            return None
        except kindctl.ToolError as err:
            return subprocess.CompletedProcess(list(args), LAUNCH_FAILED, "", str(err))


LAUNCH_FAILED = 126


@dataclass(frozen=True)
class HostFacts:
    """What the program needs to know about the host before registering resources."""

    mtu: int  # the default bridge network's MTU (what kind copies into its networks); 0 = unknown


def parse_kind_version(text: str) -> tuple[int, int, int] | None:
    """``kind v0.30.0 go1.24.6 linux/amd64`` -> (0, 30, 0)."""
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def installed_kind_version(host: Host | None = None) -> tuple[int, int, int] | None:
    """The release `kind version` reports; None when kind is missing or does not answer."""
    host = host or Host()
    proc = host.run(host.kind, "version")
    if proc is None or proc.returncode != 0:
        return None
    return parse_kind_version(proc.stdout or "")


def check(plan: StackPlan, host: Host | None = None) -> list[str]:
    return _check(plan, host or Host())[0]


def _check(plan: StackPlan, host: Host) -> tuple[list[str], int]:
    """(every problem, the daemon's default MTU: 0 when unknown)."""
    problems: list[str] = []
    mtu = 0
    docker_ok = _check_docker(host, problems)
    kind_ok = _check_kind(host, problems, plan.kind_version)
    _check_inotify(host, plan, problems)
    if docker_ok:
        mtu = default_mtu(host)
        problems += network_problems(plan, inspect_networks(host), mtu)
    if docker_ok and kind_ok:
        _check_clusters(host, plan, problems)
    return problems, mtu


def under_pulumi_mocks() -> bool:
    """True inside unit tests that run the program with ``pulumi.runtime.set_mocks``.

    The host checks are about the real machine; a mocked engine creates nothing on it.
    (Looked up lazily: this module itself does not depend on Pulumi.)
    """
    settings = sys.modules.get("pulumi.runtime.settings")
    mocks = sys.modules.get("pulumi.runtime.mocks")
    if settings is None or mocks is None:
        return False
    try:
        return isinstance(settings.get_monitor(), mocks.MockMonitor)
    except Exception:  # no monitor configured at all
        return False


@dataclass(frozen=True)
class Preflighted:
    """What the whole preflight hands the composition: the plan (existing clusters' facts
    resolved) and the host's facts (None under mocks or without kind clusters)."""

    plan: StackPlan
    facts: HostFacts | None = None


def run(plan: StackPlan, host: Host | None = None) -> HostFacts | None:
    """Raise PreflightError with every problem found on this host; return the host's facts.

    Under Pulumi mocks nothing is called and None is returned (no facts, no options).
    """
    if host is None and under_pulumi_mocks():
        return None
    problems, mtu = _check(plan, host or Host())
    if problems:
        raise PreflightError(problems)
    return HostFacts(mtu=mtu)


def default_mtu(host: Host) -> int:
    """The MTU of docker's default ``bridge`` network, read the way kind reads it
    (``docker network inspect bridge -f '{{ index .Options "com.docker.network.driver.mtu" }}'``);
    0 when it is not set or not one integer."""
    proc = host.run(host.docker, "network", "inspect", "bridge", "-f",
                    '{{ index .Options "com.docker.network.driver.mtu" }}')
    if proc is None or proc.returncode != 0:
        return 0
    lines = proc.stdout.splitlines()
    if len(lines) != 1 or not lines[0].strip().isdigit():
        return 0
    return int(lines[0].strip())


def _check_docker(host: Host, problems: list[str]) -> bool:
    proc = host.run(host.docker, "info", "--format", "{{.ServerVersion}}")
    if proc is None:
        problems.append("docker CLI not found: install Docker Engine (https://docs.docker.com/engine/install/)")
        return False
    if proc.returncode == LAUNCH_FAILED and not proc.stdout:
        problems.append(proc.stderr)
        return False
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        problems.append(
            "docker is not reachable (is the daemon running and may this user use it? "
            f"try `docker info`): {said[-1] if said else 'no output'}"
        )
        return False
    return True


def _check_kind(host: Host, problems: list[str], plan_kind: tuple[int, int, int] | None = None) -> bool:
    proc = host.run(host.kind, "version")
    want = ".".join(map(str, MIN_KIND))
    if proc is None:
        problems.append(f"kind not found on PATH: install kind v{want} or newer (https://kind.sigs.k8s.io)")
        return False
    if proc.returncode == LAUNCH_FAILED and not proc.stdout:
        problems.append(proc.stderr)
        return False
    version = parse_kind_version(proc.stdout or "")
    if proc.returncode != 0 or version is None:
        said = (proc.stderr or proc.stdout).strip()[-500:]
        problems.append(f"`kind version` did not answer as expected: {said or '(no output)'}; reinstall kind v{want}+")
        return False
    if version < MIN_KIND:
        known = ", ".join(f"{fmt_release(r)} -> {img.split('@')[0]}" for r, img in KIND_NODE_IMAGES.items())
        problems.append(
            f"kind {fmt_release(version)} is too old: kindmesh needs v{want} or newer (node images per kind "
            f"release: {known}); install a newer kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
        )
        return False
    if plan_kind is not None and plan_kind != version:
        problems.append(
            f"kind {fmt_release(version)} is installed but the plan was made for kind {fmt_release(plan_kind)} "
            "(kind changed during the run?); run the command again")
        return False
    return True


def _check_inotify(host: Host, plan: StackPlan, problems: list[str]) -> None:
    kinds = sum(c.source == "kind" for c in plan.clusters)  # existing clusters run elsewhere
    if kinds < 2 or not host.proc_sys.is_dir():
        return  # one cluster is fine on defaults; non-Linux hosts have no /proc here
    low = []
    for key, want in INOTIFY.items():
        try:
            have = int((host.proc_sys / key).read_text().strip())
        except (OSError, ValueError):
            continue
        if have < want:
            low.append((key, have, want))
    if low:
        lines = " ".join(f"fs.inotify.{k}={w}" for k, _, w in low)
        found = ", ".join(f"fs.inotify.{k} is {h}" for k, h, _ in low)
        problems.append(
            f"inotify limits too low for several kind clusters ({found}); run: sudo sysctl -w {lines} "
            "(persist them in /etc/sysctl.d/99-kindmesh.conf)"
        )


def inspect_networks(host: Host) -> list[dict[str, object]]:
    """The host's docker networks as ``docker network inspect`` reports them ([] when unreadable)."""
    ls = host.run(host.docker, "network", "ls", "--format", "{{.Name}}")
    if ls is None or ls.returncode != 0:
        return []
    names = [n.strip() for n in ls.stdout.splitlines() if n.strip()]
    if not names:
        return []
    proc = host.run(host.docker, "network", "inspect", *names)
    if proc is None or proc.returncode != 0:
        return []
    try:
        data = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return []
    return [n for n in data if isinstance(n, dict)] if isinstance(data, list) else []


DEFAULT_MTU = 1500
MTU_OPTION = "com.docker.network.driver.mtu"


def planned_mtu(mtu: int) -> str | None:
    """The MTU option the stack's network gets for the daemon's default MTU (as kind does):
    none when it is unknown (0) or 1500."""
    return str(mtu) if mtu > 0 and mtu != DEFAULT_MTU else None


def _subnets(net: dict[str, object]) -> list[ipaddress.IPv4Network]:
    ipam = net.get("IPAM") or {}
    configs = ipam.get("Config") if isinstance(ipam, dict) else None
    found = []
    for cfg in configs if isinstance(configs, list) else []:
        subnet = cfg.get("Subnet") if isinstance(cfg, dict) else None
        if not isinstance(subnet, str) or not subnet:
            continue
        try:
            theirs = ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            continue
        if isinstance(theirs, ipaddress.IPv4Network):
            found.append(theirs)
    return found


def network_problems(plan: StackPlan, networks: list[dict[str, object]], mtu: int) -> list[str]:
    """What the host's docker networks say about the plan's network (``docker network inspect``):

    * a network with the planned name that is not this stack's;
    * a network that is not this stack's whose subnet overlaps the planned one (named);
    * this stack's own network, live, with another subnet, name or MTU than planned: docker
      cannot change a network under running kind nodes (every field forces a replace, under the
      same fixed name, and the clusters would not be recreated), so this is refused with the way
      out, before anything is registered.
    """
    if not any(c.source == "kind" for c in plan.clusters):
        return []
    problems: list[str] = []
    ours = ipaddress.ip_network(plan.network.subnet)
    stack = plan.stack
    for net in networks:
        name = str(net.get("Name", ""))
        labels = net.get("Labels") or {}
        owned = isinstance(labels, dict) and labels.get(STACK_LABEL) == plan.stack_label
        if owned:
            problems += _live_network_changes(plan, net, name, mtu)
            continue
        if name == plan.network.name:
            problems.append(
                f"docker network {name!r} exists but is not this stack's (no label "
                f"{STACK_LABEL}={plan.stack_label}); remove it or set kindmesh:network.name"
            )
            continue
        for theirs in _subnets(net):
            if theirs.overlaps(ours):
                problems.append(
                    f"kindmesh:network.subnet {ours} clashes with docker network {name!r} ({theirs}); "
                    f"pick a free subnet in Pulumi.{stack}.yaml (`docker network ls` lists the networks; "
                    "`make new-stack` writes a stack file with a free one)"
                )
    return problems


def _live_network_changes(plan: StackPlan, net: dict[str, object], name: str, mtu: int) -> list[str]:
    stack = plan.stack
    way_out = (f"Either put it back, or recreate the stack: `make destroy STACK={stack}` (deletes its kind "
               f"clusters and network) then `make up STACK={stack}`; or use a new stack "
               "(`make new-stack NAME=...`)")
    problems = []
    live = _subnets(net)
    if name != plan.network.name:
        problems.append(
            f"kindmesh:network.name: this stack's docker network is {name!r} on this host, but the config now "
            f"plans {plan.network.name!r}; the kind clusters are attached to {name!r} and cannot move. {way_out}"
        )
    if live and str(live[0]) != plan.network.subnet:
        problems.append(
            f"kindmesh:network.subnet is {plan.network.subnet}, but this stack's live docker network {name!r} "
            f"has {live[0]}: a docker network cannot change its subnet while kind nodes are attached to it "
            f"(Pulumi would replace it under the same name and the clusters would not follow). {way_out}"
        )
    options = net.get("Options") or {}
    have = options.get(MTU_OPTION) if isinstance(options, dict) else None
    want = planned_mtu(mtu)
    if mtu > 0 and str(have or DEFAULT_MTU) != str(want or DEFAULT_MTU):
        problems.append(
            f"the Docker daemon's default MTU is now {mtu}, but this stack's live docker network {name!r} has "
            f"MTU {have or DEFAULT_MTU}: the network (and the kind nodes on it) cannot change MTU in place. "
            f"Either restore the daemon's MTU (\"mtu\" in /etc/docker/daemon.json, then restart docker), or "
            f"recreate the stack: `make destroy STACK={stack}` then `make up STACK={stack}`"
        )
    return problems


def _check_clusters(host: Host, plan: StackPlan, problems: list[str]) -> None:
    proc = host.run(host.kind, "get", "clusters")
    if proc is None or proc.returncode != 0:
        return
    existing = {line.strip() for line in proc.stdout.splitlines() if line.strip()}
    for c in plan.clusters:
        if c.kind_name not in existing:
            continue
        insp = host.run(
            host.docker, "inspect", "--format", "{{json .NetworkSettings.Networks}}", c.control_plane
        )
        networks: dict[str, object] = {}
        if insp is not None and insp.returncode == 0:
            try:
                networks = json.loads(insp.stdout or "{}") or {}
            except json.JSONDecodeError:
                networks = {}
        if plan.network.name not in networks:
            problems.append(
                f"kind cluster {c.kind_name!r} (for cluster {c.name!r}) already exists and is not this "
                f"stack's (its nodes are not on docker network {plan.network.name!r}); delete it with "
                f"`kind delete cluster --name {c.kind_name}` or rename the cluster"
            )
        elif plan.config.kind.node_image is None and plan.node_image:
            _check_node_image(host, plan, c.name, c.kind_name, c.control_plane, problems)


def _check_node_image(host: Host, plan: StackPlan, name: str, kind_name: str, container: str,
                      problems: list[str]) -> None:
    """A cluster of this stack runs another node image than the plan's (kind was upgraded since
    it was created): `up` would delete and recreate it, so say so and how to keep it."""
    proc = host.run(host.docker, "inspect", "--format", "{{.Config.Image}}", container)
    running = (proc.stdout or "").strip() if proc is not None and proc.returncode == 0 else ""
    if not running or running.startswith("sha256:") or same_image(running, plan.node_image):
        return
    stack = plan.stack
    problems.append(
        f"kind cluster {kind_name!r} (cluster {name!r}) runs node image {running}, but the installed kind "
        f"{fmt_release(plan.kind_version) if plan.kind_version else ''} creates {plan.node_image}: `up` would delete "
        "and recreate the cluster. To keep it, pin its image: pulumi config set --stack "
        f"{stack} --path 'kindmesh:kind.nodeImage' '{running}'; to move to the new image, recreate it on "
        f"purpose (kind delete cluster --name {kind_name}, then make up STACK={stack})")


def same_image(a: str, b: str) -> bool:
    """Same ``repo:tag``, and the same digest when both name one."""
    (name_a, _, digest_a), (name_b, _, digest_b) = a.partition("@"), b.partition("@")
    return name_a == name_b and (not digest_a or not digest_b or digest_a == digest_b)
