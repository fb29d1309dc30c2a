"""The real-engine tier: every lifecycle step of a stack, run by the real Pulumi CLI.

    python -m tests.integration.lifecycle [--scenario NAME ...] [--stack-file PATH] [--report FILE]

(``make integration`` runs it; ``make integration STACK_FILE=path`` runs one stack file.)

Each scenario copies the project (what git tracks) into a work directory, writes a stack
file, and runs the real ``pulumi`` with the real provider plugins (built by ``make tools``)
on a local file backend, against a world of simulated clusters (tests/integration/
fake_kind.py, simcluster.py, world.py) and a fake Docker Engine (fake_docker.py). The whole
run happens inside a network namespace this module makes (loopback only): anything the API
servers, providers or webhooks dial outside 127.0.0.0/8 fails at once.

The engine's own plan of each step is read from Pulumi's event log (``--event-log``): the
operation of every resource (same, create, update, replace, delete …) and the summary. Each
step states what it expects of that plan; a table is printed and a JSON report written.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import errno
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration import durations, timing

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CHARTS = SHARED / "upstream" / "charts"
NETNS_ENV = "KINDMESH_TIER_NETNS"
PASSPHRASE = "kindmesh-engine-tier"
REPLACE_OPS = {"replace", "create-replacement", "delete-replaced", "discard-replaced", "import-replacement"}
STEP_TIMEOUT = 1800


# ====================================================================== network namespace


def _set_loopback_up() -> None:
    """``ip link set lo up`` without iproute2: SIOCGIFFLAGS/SIOCSIFFLAGS on ``lo``."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), siocgifflags, ifreq))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


# The simulated Docker host's kernel settings: what the README asks a user to set for several kind
# clusters. The tier shows them to the program (and the doctor) in its own mount namespace, over
# /proc/sys/fs/inotify, so it passes on a host with default settings without changing them.
SIMULATED_SYSCTL = {"max_user_watches": 524288, "max_user_instances": 512, "max_queued_events": 16384}
# The world's simulated hosts (existing clusters' servers and agents) get addresses from the
# benchmarking range (RFC 2544) on loopback inside the namespace: reachable there, routed nowhere.
HOST_NET = ipaddress.ip_network("198.18.0.0/24")


def enter_netns() -> str:
    """Move this process into new network and mount namespaces: loopback only (up), and the
    simulated host's sysctls over /proc/sys/fs/inotify.

    Root: ``unshare(CLONE_NEWNET|CLONE_NEWNS)``. Otherwise a user namespace first (mapping
    this user to root inside it), which unprivileged users may create on most distributions.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet, clone_newuser, clone_newns = 0x40000000, 0x10000000, 0x00020000
    how = "unshare(CLONE_NEWNET|CLONE_NEWNS)"
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        if libc.unshare(clone_newuser | clone_newnet | clone_newns) != 0:
            err = ctypes.get_errno()
            raise SystemExit(f"engine tier: cannot create a user+network namespace ({os.strerror(err)}); "
                             "run as root, or enable unprivileged user namespaces (kernel.unprivileged_userns_clone=1)")
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
        how = "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS)"
    elif libc.unshare(clone_newnet | clone_newns) != 0:
        raise SystemExit(f"engine tier: unshare(CLONE_NEWNET|CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}")
    _set_loopback_up()
    ms_rec, ms_private, ms_bind = 0x4000, 0x40000, 0x1000
    if libc.mount(None, b"/", None, ms_rec | ms_private, None) != 0:
        raise SystemExit(f"engine tier: making / private failed: {os.strerror(ctypes.get_errno())}")
    sysctl = Path(tempfile.mkdtemp(prefix="kmt-sysctl-", dir="/tmp"))
    for key, value in SIMULATED_SYSCTL.items():
        (sysctl / key).write_text(f"{value}\n")
    target = Path("/proc/sys/fs/inotify")
    if target.is_dir() and libc.mount(str(sysctl).encode(), str(target).encode(), None, ms_bind, None) != 0:
        raise SystemExit(f"engine tier: bind-mounting the simulated sysctls failed: {os.strerror(ctypes.get_errno())}")
    os.environ[NETNS_ENV] = "1"
    os.environ["KINDMESH_TIER_SYSCTL"] = str(sysctl)
    return how


def leave_mounts() -> None:
    """Undo the simulated sysctls' bind mount and remove their folder."""
    sysctl = os.environ.pop("KINDMESH_TIER_SYSCTL", "")
    if not sysctl:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(b"/proc/sys/fs/inotify", 2)  # MNT_DETACH
    shutil.rmtree(sysctl, ignore_errors=True)


def add_host_address(address: str) -> None:
    """Give a simulated host its address (on loopback, inside the tier's namespace only)."""
    if os.environ.get(NETNS_ENV) != "1":
        raise RuntimeError("host addresses exist only inside the tier's network namespace")
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True, capture_output=True, text=True)


def check_isolation() -> dict[str, Any]:
    """Loopback works; a non-loopback destination fails at once (no route)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=2):
            pass
    # TEST-NET-1 (RFC 5737, never assigned): with no route it must fail immediately.
    t0 = time.monotonic()
    with socket.socket() as s:
        s.settimeout(2)
        code = s.connect_ex(("192.0.2.1", 9))
    elapsed = time.monotonic() - t0
    if code not in (errno.ENETUNREACH, errno.EHOSTUNREACH) or elapsed > 0.5:
        raise SystemExit(f"engine tier: the namespace is not isolated (connect to 192.0.2.1 gave {code} in {elapsed:.2f}s)")
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(ln.split(":", 1)[0].strip() for ln in lines)
    return {"interfaces": interfaces, "outside": os.strerror(code)}


# ====================================================================== tools and world


CLUSTER_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm", "kubectl")
ENGINE_TOOLS = ("pulumi", "pulumi-language-python")
PLUGINS = ("command", "kubernetes", "tls", "docker")


@dataclass
class Tools:
    dir: Path

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    @property
    def plugins(self) -> Path:
        return self.dir / "pulumi-home" / "plugins"

    def missing(self, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if not (self.bin / n).is_file()]

    def missing_plugins(self) -> list[str]:
        have = {p.name.split("-")[1] for p in self.plugins.glob("resource-*-v*") if p.is_dir()} \
            if self.plugins.is_dir() else set()
        return [p for p in PLUGINS if p not in have]

    def engine_missing(self) -> list[str]:
        return self.missing(ENGINE_TOOLS) + [f"pulumi-resource-{p}" for p in self.missing_plugins()]


def find_tools() -> Tools | None:
    path = os.environ.get("KINDMESH_TOOLS_DIR", "")
    if not path:
        proc = subprocess.run(["make", "-s", "--no-print-directory", "tools-dir"], cwd=REPO, capture_output=True,
                              text=True, check=False)
        path = proc.stdout.strip() if proc.returncode == 0 else ""
    if not path:
        return None
    tools = Tools(Path(path))
    return None if tools.missing(CLUSTER_TOOLS) else tools


class World:
    """The fake Docker Engine, the fake ``kind``/``docker`` on PATH, the simulated clusters."""

    def __init__(self, root: Path, tools: Tools):
        self.root, self.tools = root, tools
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        py = sys.executable
        for name, module, sub in (("kind", "tests.integration.fake_kind", ""), ("docker", "tests.integration.fake_docker", " cli")):
            wrapper = self.bin / name
            wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{py}" -m {module}{sub} "$@"\n')
            wrapper.chmod(0o755)
        self.socket = root / "docker.sock"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.hosts: list[str] = []
        self.lock = threading.Lock()
        home = root / "pulumi-home"
        home.mkdir()
        if tools.plugins.is_dir():
            (home / "plugins").symlink_to(tools.plugins)
        self.env = {
            k: v for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and not k.startswith(("PULUMI_", "KUBECONFIG", "DOCKER_"))
        }
        self.env.update({
            "PATH": os.pathsep.join([str(self.bin), str(tools.bin), str(Path(py).parent), os.environ.get("PATH", "")]),
            "KINDMESH_WORLD": str(root), "KINDMESH_TOOLS_BIN": str(tools.bin),
            "DOCKER_HOST": f"unix://{self.socket}", "HOME": str(root / "home"),
            "PULUMI_HOME": str(home), "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1",
            # `--event-log` exists only with this set
            "PULUMI_DEBUG_COMMANDS": "true",
            # the file backend of this run (no `pulumi login`: scenarios run side by side)
            "PULUMI_BACKEND_URL": f"file://{root / 'state'}",
            "XDG_RUNTIME_DIR": str(root / "run"), "KINDMESH_RUNTIME_DIR": str(root / "run"),
        })
        (root / "home").mkdir()
        (root / "state").mkdir()
        (root / "run").mkdir(mode=0o700)
        os.environ.update({"KINDMESH_WORLD": str(root), "KINDMESH_TOOLS_BIN": str(tools.bin),
                           "DOCKER_HOST": f"unix://{self.socket}"})

    def start(self) -> None:
        log = open(self.root / "docker-daemon.log", "ab")  # noqa: SIM115 - the daemon keeps writing to it
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.fake_docker", "daemon", "--state", str(self.root / "docker"),
             "--socket", str(self.socket)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env={**self.env, "PYTHONPATH": str(REPO)})
        poll(lambda: (self.root / "docker" / "daemon.ready").exists(), 30, "the fake Docker Engine")

    def clusters(self) -> list[str]:
        d = self.root / "clusters"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    def networks(self) -> list[str]:
        from tests.integration import fake_docker
        return sorted(n["Name"] for n in fake_docker.api_json("GET", "/networks"))

    def requests(self) -> list[dict[str, Any]]:
        path = self.root / "docker" / "requests.log"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def host_address(self) -> str:
        """The next free address of the world's simulated hosts (added to the namespace's loopback)."""
        with self.lock:
            address = str(HOST_NET.network_address + 11 + len(self.hosts))
            add_host_address(address)
            self.hosts.append(address)
        return address

    def start_existing(self, name: str, pod_subnet: str, service_subnet: str, workers: int = 1) -> tuple[Path, str]:
        """A simulated existing cluster (as a k3s/kubeadm cluster would be), its server on a host
        address of its own with the API server on :6443: (its kubeconfig path, that address)."""
        from tests.integration import simcluster
        server = self.host_address()
        nodes = [simcluster.NodeSpec(f"{name}-server", "control-plane", server)]
        nodes += [simcluster.NodeSpec(f"{name}-agent{i}", "worker", self.host_address()) for i in range(1, workers + 1)]
        state = simcluster.ClusterState(
            name=name, network="", pod_subnet=pod_subnet, service_subnet=service_subnet,
            image="rancher/k3s:v1.34.1-k3s1", api_port=6443, etcd_port=simcluster.free_port(),
            egress_port=simcluster.free_port(), nodes=nodes, host=server)
        state.dir.mkdir(parents=True)
        simcluster.start(state)
        path = self.root / "existing" / f"{name}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        path.write_text(simcluster.kubeconfig(state).replace(f"kind-{name}", name))
        path.chmod(0o600)
        return path, server

    def stop(self) -> None:
        from tests.integration import simcluster
        for name in self.clusters():
            simcluster.stop(name)
        if self.daemon:
            self.daemon.terminate()
            self.daemon.wait(10)


def poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()``'s first truthy value, polled with bounded exponential backoff and jitter under
    one deadline (TimeoutError after it). The tier's one way to wait (faults, diagnose use it)."""
    import random
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not seen within {timeout:.0f}s")
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)


# ====================================================================== the engine's plan


@dataclass
class Plan:
    """What the engine did (or would do) in one step, from its event log."""

    ops: dict[str, str] = field(default_factory=dict)  # urn -> op
    types: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, list[str]] = field(default_factory=dict)
    summary: dict[str, int] = field(default_factory=dict)
    order: list[dict[str, Any]] = field(default_factory=list)  # (urn, op, start, end)
    diagnostics: list[str] = field(default_factory=list)

    def changed(self) -> dict[str, str]:
        return {u: o for u, o in self.ops.items() if o not in ("same", "read", "refresh")}

    def by_op(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for urn, op in sorted(self.changed().items()):
            out.setdefault(op, []).append(short(urn))
        return out


def short(urn: str) -> str:
    """``type::name`` of a URN (the parent chain left out)."""
    parts = urn.split("::")
    typ = parts[2].rsplit("$", 1)[-1] if len(parts) > 2 else ""
    return f"{typ}::{parts[-1]}"


def events(event_log: Path) -> Iterator[dict[str, Any]]:
    """The engine events of a log (``--event-log``; a line still being written is skipped)."""
    if not event_log.exists():
        return
    for line in event_log.read_text().splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def read_plan(event_log: Path) -> Plan:
    plan = Plan()
    starts: dict[str, float] = {}
    for ev in events(event_log):
        t = float(ev.get("timestamp", 0))
        if "resourcePreEvent" in ev:
            md = ev["resourcePreEvent"]["metadata"]
            urn = md["urn"]
            plan.ops[urn] = "replace" if md["op"] in REPLACE_OPS else md["op"]
            plan.types[urn] = md.get("type", "")
            plan.diffs[urn] = sorted(md.get("diffs") or [])
            starts.setdefault(urn, t)
        elif "resOutputsEvent" in ev:
            md = ev["resOutputsEvent"]["metadata"]
            urn = md["urn"]
            plan.order.append({"urn": urn, "op": md["op"], "start": starts.get(urn, t), "end": t})
        elif "diagnosticEvent" in ev:
            d = ev["diagnosticEvent"]
            if d.get("severity") in ("error",):
                plan.diagnostics.append(d.get("message", "").strip()[:2000])
        elif "summaryEvent" in ev:
            plan.summary = {k: int(v) for k, v in (ev["summaryEvent"].get("resourceChanges") or {}).items()}
    return plan


# ====================================================================== scenarios


def owner(urn: str, clusters: list[str]) -> str | None:
    """The cluster a resource belongs to (its name is ``<cluster>`` or ``<cluster>-…``)."""
    name = urn.split("::")[-1]
    for c in sorted(clusters, key=len, reverse=True):
        if name == c or name.startswith(c + "-"):
            return c
    return None


Expect = Callable[[Plan, "Scenario"], list[str]]


def expect_only(*ops: str) -> Expect:
    def check(plan: Plan, sc: Scenario) -> list[str]:
        bad = {short(u): o for u, o in plan.changed().items() if o not in ops}
        return [f"unexpected {o}: {u}" for u, o in sorted(bad.items())]
    check.__doc__ = "only " + (", ".join(ops) if ops else "no changes")
    return check


def expect_nothing(plan: Plan, sc: Scenario) -> list[str]:
    """no changes"""
    return [f"expected no changes, got {o}: {short(u)}" for u, o in sorted(plan.changed().items())]


def expect_refresh_clean(plan: Plan, sc: Scenario) -> list[str]:
    """refresh finds every resource as the state has it"""
    # a refresh's steps are all `refresh`; what it found differs shows in its summary only
    return [f"refresh found {n} resource(s) to {op}" for op, n in sorted(plan.summary.items()) if op != "same" and n]


UPDATABLE_ON_PEER_CHANGE = ("kubernetes:helm.sh/v3:Release", "command:local:Command")
# The engine gives the Python dynamic provider (the default `pulumi-python` provider of the
# program's dynamic resources) the whole stack config as its inputs (pulumi/pulumi#17552), so any
# edit of the stack file updates that provider resource, and nothing through it: no resource's
# diff depends on it. A step that edits the stack file sets such an update aside (reported).
DYNAMIC_PROVIDER = "pulumi:providers:pulumi-python"


def expect_cluster_added(name: str) -> Expect:
    def check(plan: Plan, sc: Scenario) -> list[str]:
        problems = []
        clusters = sc.cluster_names()
        created = [u for u, o in plan.changed().items() if o == "create"]
        for urn, op in sorted(plan.changed().items()):
            who = owner(urn, clusters)
            if op == "create" and who != name:
                problems.append(f"create of a resource that is not cluster {name}'s: {short(urn)}")
            elif op == "update" and (who == name or plan.types[urn] not in UPDATABLE_ON_PEER_CHANGE):
                problems.append(f"update that a new peer does not explain: {short(urn)} {plan.diffs.get(urn)}")
            elif op not in ("create", "update"):
                problems.append(f"{op} of {short(urn)} (adding a cluster must only create and update)")
        if not created:
            problems.append(f"nothing was created for cluster {name}")
        return problems
    check.__doc__ = f"creates of {name}'s resources; updates of peers' releases/commands only"
    return check


def expect_cluster_removed(name: str) -> Expect:
    def check(plan: Plan, sc: Scenario) -> list[str]:
        problems = []
        clusters = [*sc.cluster_names(), name]
        deleted = [u for u, o in plan.changed().items() if o == "delete"]
        for urn, op in sorted(plan.changed().items()):
            who = owner(urn, clusters)
            if op == "delete" and who != name:
                problems.append(f"delete of a resource that is not cluster {name}'s: {short(urn)}")
            elif op == "update" and plan.types[urn] not in UPDATABLE_ON_PEER_CHANGE:
                problems.append(f"update that a removed peer does not explain: {short(urn)}")
            elif op not in ("delete", "update"):
                problems.append(f"{op} of {short(urn)} (removing a cluster must only delete and update)")
        if not deleted:
            problems.append(f"nothing was deleted for cluster {name}")
        return problems
    check.__doc__ = f"deletes of {name}'s resources; updates of peers' releases/commands only"
    return check


def expect_updates_of(*types: str) -> Expect:
    def check(plan: Plan, sc: Scenario) -> list[str]:
        problems = [f"{o} of {short(u)}" for u, o in sorted(plan.changed().items())
                    if o != "update" or plan.types[u] not in types]
        if not plan.changed():
            problems.append("the change produced no update at all")
        return problems
    check.__doc__ = "updates of " + ", ".join(t.split(":")[-1] for t in types) + " only"
    return check


def expect_destroyed(plan: Plan, sc: Scenario) -> list[str]:
    """deletes only; nothing of ours left"""
    problems = [f"{o} of {short(u)} during destroy" for u, o in sorted(plan.changed().items()) if o != "delete"]
    world = sc.world
    assert world is not None
    own_kinds, own_nets = owned(sc)
    kinds = [c for c in world.clusters() if c in own_kinds]
    if kinds:
        problems.append(f"kind clusters left: {kinds}")
    nets = [n for n in world.networks() if n in own_nets]
    if nets:
        problems.append(f"docker networks left: {nets}")
    kc = sc.kubeconfig_file()
    if kc.exists():
        problems.append(f"kubeconfig file left: {kc}")
    for name, path in sc.existing.items():
        left = leftover_objects(path)
        if left:
            problems.append(f"objects of ours left in existing cluster {name}: {left[:8]}")
    state = sc.pulumi(["stack", "export"], capture=True)
    resources = json.loads(state.stdout or "{}").get("deployment", {}).get("resources") or []
    if resources:
        problems.append(f"the stack still has {len(resources)} resource(s)")
    return problems


EXAMPLE_MESH = {"clusters": [{"name": "east", "id": 1, "workers": 0}, {"name": "west", "id": 2, "workers": 0}],
                "network": {"subnet": "172.26.0.0/24", "poolSize": 8}}  # examples/two-cluster-mesh/__main__.py


def owned(sc: Scenario) -> tuple[set[str], set[str]]:
    """The kind clusters and docker networks this scenario's program makes (scenarios share one
    world): what the planner names for its stack file (and the added cluster ``zz``)."""
    from kindmesh.core.planner import kind_name_for, load_plan
    from tests.integration.cluster_tier import raw_config
    if sc.example and sc.project.name == "single-cluster":
        return {"solo"}, {"solo-net"}
    if sc.example:
        raw, stack = EXAMPLE_MESH, f"{sc.stack}-lab"
    else:
        raw, stack = raw_config(sc.config), sc.stack
    plan = load_plan(raw, stack=stack)
    kinds = {c.kind_name for c in plan.clusters if c.source == "kind"} | {kind_name_for(stack, "zz")}
    return kinds, {plan.network.name} if plan.network else set()


def leftover_objects(kubeconfig: Path) -> list[str]:
    from kubernetes import client, config
    api = config.new_client_from_config(str(kubeconfig))
    out = []
    for ns in client.CoreV1Api(api).list_namespace().items:
        if ns.metadata.name not in ("default", "kube-system", "kube-public", "kube-node-lease") \
                and ns.status.phase != "Terminating":
            out.append(f"namespace/{ns.metadata.name}")
    for ds in client.AppsV1Api(api).list_daemon_set_for_all_namespaces().items:
        out.append(f"daemonset/{ds.metadata.namespace}/{ds.metadata.name}")
    for dep in client.AppsV1Api(api).list_deployment_for_all_namespaces().items:
        out.append(f"deployment/{dep.metadata.namespace}/{dep.metadata.name}")
    return out


@dataclass
class Step:
    name: str
    command: str  # preview | up | refresh | destroy | diff | custom
    expect: Expect | None = None
    edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    after: Callable[[Scenario], list[str]] | None = None
    custom: Callable[[Scenario, Path], list[str]] | None = None  # command "custom": the whole step


@dataclass
class Scenario:
    name: str
    stack: str
    config: dict[str, Any]  # the stack file
    project: Path = REPO
    steps: list[Step] = field(default_factory=list)
    existing: dict[str, Path] = field(default_factory=dict)
    workdir: Path = Path()
    world: World | None = None
    plans: list[Plan] = field(default_factory=list)
    last_output: str = ""  # what the last step printed (for checks on `preview --diff`)
    example: bool = False  # a program of its own (examples/): its config is in its code
    extra_env: dict[str, str] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)  # the stack file of the last successful up

    @property
    def env(self) -> dict[str, str]:
        assert self.world is not None
        env = {**self.world.env, **self.extra_env}
        if self.project != REPO:  # an example: the kindmesh package from this checkout
            env["PYTHONPATH"] = str(REPO)
        return env

    def cluster_names(self) -> list[str]:
        if self.example:
            return list(EXAMPLE_CLUSTERS[self.project.name])
        return [c["name"] for c in self.config["config"].get("kindmesh:clusters") or []]

    def kubeconfig_file(self) -> Path:
        """Where the program writes its kubeconfig file (a Mesh component: ``<stack>-<name>``)."""
        folder = f"{self.stack}-lab" if self.example else self.stack
        return self.workdir / ".kindmesh" / folder / "kubeconfig"

    def pulumi(self, args: list[str], *, capture: bool = True, event_log: Path | None = None) -> subprocess.CompletedProcess[str]:
        assert self.world is not None
        argv = ["pulumi", *args, "--stack", self.stack, "--non-interactive"]
        if event_log:
            argv += ["--event-log", str(event_log)]
        return subprocess.run(argv, cwd=self.workdir, env=self.env, capture_output=capture, text=True,
                              timeout=STEP_TIMEOUT, check=False)


def with_charts(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    cfg = doc.setdefault("config", {})
    cfg["kindmesh:charts"] = {"cilium": str(CHARTS), "metallb": str(CHARTS)}
    return doc


def _edit_clusters(fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["config"]["kindmesh:clusters"] = fn(list(doc["config"]["kindmesh:clusters"]))
        return doc
    return edit


def full_lifecycle(sc: Scenario) -> list[Step]:
    """Every step of a stack's life, each with the engine plan it must produce."""
    steps = [
        Step("preview", "preview", expect_only("create")),
        Step("up", "up", expect_only("create"), after=check_kubectl),
        Step("preview again", "preview", expect_nothing),
        Step("up again", "up", expect_nothing),
        Step("refresh", "refresh", expect_refresh_clean),
    ]
    if sc.example:
        return [*steps, Step("destroy", "destroy", expect_destroyed)]
    clusters = sc.config["config"]["kindmesh:clusters"]
    ids = [int(c["id"]) for c in clusters]
    if any(c.get("source", "kind") == "kind" for c in clusters):
        new = {"name": "zz", "id": max(ids) + 1, "workers": 0}
        steps += [
            Step("add cluster zz", "up", expect_cluster_added("zz"), edit=_edit_clusters(lambda cs: [*cs, new]),
                 after=check_kubectl),
            Step("up after add", "up", expect_nothing),
            Step("remove cluster zz", "up", expect_cluster_removed("zz"),
                 edit=_edit_clusters(lambda cs: [c for c in cs if c["name"] != "zz"])),
        ]
    steps += [
        Step("reorder clusters", "up", expect_nothing, edit=_edit_clusters(lambda cs: list(reversed(cs)))),
        # The Hubble UI's address stays reserved while the UI is off, so no MetalLB pool changes
        # (an address moving between the pools made MetalLB's webhook refuse the update).
        Step("hubble UI toggled (preview --diff)", "diff", expect_updates_of(*UPDATABLE_ON_PEER_CHANGE),
             edit=toggle_hubble_ui, after=check_diff_secrets),
        Step("hubble UI toggled", "up", expect_updates_of(*UPDATABLE_ON_PEER_CHANGE)),
    ]
    steps += upgrade_steps(sc)
    steps.append(Step("destroy", "destroy", expect_destroyed))
    return steps


def defect_steps() -> list[Step]:
    """The two defects fixed before the engine could run (docs/integration.md), each fix put back
    out by KINDMESH_TIER_REVERT: the engine's plan must show the replacement each causes, so the
    lifecycle's expectations (no change on a second run; updates only on a value change) fail."""
    return [
        Step("up (both fixes reverted)", "up", expect_only("create")),
        Step("network-options reverted: preview again", "preview", expect_replaced("docker:index/network:Network")),
        Step("gate-triggers reverted: value change (preview --diff)", "diff", expect_replaced("command:local:Command"),
             edit=toggle_hubble_ui),
        Step("destroy", "destroy", expect_destroyed),
    ]


BAD_KEYS = {  # an edit of the stack file with several mistakes at once, and the key each must name
    "kindmesh:clusters[0].workers": lambda c: c["kindmesh:clusters"][0].update(workers=-1),
    "kindmesh:netwrk": lambda c: c.update({"kindmesh:netwrk": {"subnet": "172.22.0.0/24"}}),
    "kindmsh:cilium": lambda c: c.update({"kindmsh:cilium": {"hubbleUi": True}}),
    "kindmesh:clusters[1].id": lambda c: c["kindmesh:clusters"][1].update(id=1),
}


def state_file(sc: Scenario) -> Path:
    """The file backend's checkpoint of the scenario's stack."""
    root = Path(sc.env["PULUMI_BACKEND_URL"].removeprefix("file://"))
    project = yaml.safe_load((sc.workdir / "Pulumi.yaml").read_text())["name"]
    return root / ".pulumi" / "stacks" / project / f"{sc.stack}.json"


def invalid_stack_file(sc: Scenario, logdir: Path) -> list[str]:
    """`preview` of a stack file holding several mistakes fails before any resource is
    registered, naming every bad key, and leaves the state file byte-identical"""
    path = sc.workdir / f"Pulumi.{sc.stack}.yaml"
    good = path.read_text()
    bad = copy.deepcopy(sc.config)
    for edit in BAD_KEYS.values():
        edit(bad["config"])
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    before = state_file(sc).read_bytes() if state_file(sc).exists() else None
    event_log = logdir / f"{sc.name}-invalid.events.jsonl"
    try:
        proc = sc.pulumi(["preview"], event_log=event_log)
    finally:
        path.write_text(good)
    (logdir / f"{sc.name}-invalid.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    out = proc.stdout + proc.stderr
    problems = []
    if proc.returncode == 0:
        problems.append("preview succeeded with an invalid stack file")
    problems += [f"the error does not name {key}" for key in BAD_KEYS if key not in out]
    plan = read_plan(event_log)
    registered = [u for u in plan.ops if plan.types.get(u) != "pulumi:pulumi:Stack"]
    if registered:
        problems.append(f"resources were registered before the config was refused: {[short(u) for u in registered][:5]}")
    after = state_file(sc).read_bytes() if state_file(sc).exists() else None
    if after != before:
        problems.append("the state file changed")
    if len(out) > 20000:
        problems.append(f"the error is {len(out)} characters long (bounded?)")
    return problems


def concurrent_up(sc: Scenario, logdir: Path) -> list[str]:
    """a second `up` while one runs is refused by the backend's lock; the first completes and
    changes nothing"""
    argv = ["pulumi", "up", "--yes", "--skip-preview", "--stack", sc.stack, "--non-interactive",
            "--event-log", str(logdir / f"{sc.name}-concurrent-first.events.jsonl")]
    first = subprocess.Popen(argv, cwd=sc.workdir, env=sc.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = state_file(sc).parents[2] / "locks"
    try:
        poll(lambda: any(locks.rglob("*.json")) if locks.exists() else False, 60, "the first up's lock")
        second = sc.pulumi(["up", "--yes", "--skip-preview"],
                           event_log=logdir / f"{sc.name}-concurrent-second.events.jsonl")
    finally:
        out, _ = first.communicate(timeout=STEP_TIMEOUT)
    (logdir / f"{sc.name}-concurrent.out").write_text(out + "\n--- second ---\n" + second.stdout + second.stderr)
    problems = []
    if second.returncode == 0:
        problems.append("the second up was not refused")
    elif "locked" not in (second.stdout + second.stderr):
        problems.append(f"the second up failed, but not on the lock: {(second.stdout + second.stderr).strip()[-300:]}")
    if read_plan(logdir / f"{sc.name}-concurrent-second.events.jsonl").ops:
        problems.append("the second up registered resources")
    if first.returncode != 0:
        problems.append(f"the first up failed: {out.strip()[-300:]}")
    changed = read_plan(logdir / f"{sc.name}-concurrent-first.events.jsonl").changed()
    if changed:
        problems.append(f"the first up changed something: {sorted(short(u) for u in changed)[:5]}")
    return problems


def fault_steps() -> list[Step]:
    from tests.integration import faults  # the faults themselves (issue 24)
    return [
        Step("invalid stack file, before anything exists", "custom", custom=invalid_stack_file),
        *faults.interrupted_up_steps(),
        Step("invalid stack file, on a running stack", "custom", custom=invalid_stack_file),
        Step("second up while one runs", "custom", custom=concurrent_up),
        Step("up again", "up", expect_nothing),
        *faults.later_fault_steps(),
    ]


def expect_replaced(typ: str) -> Expect:
    def check(plan: Plan, sc: Scenario) -> list[str]:
        hit = [short(u) for u, o in plan.changed().items() if o == "replace" and plan.types[u] == typ]
        if hit:
            print(f"       caught: the plan replaces {', '.join(sorted(hit))}", flush=True)
            return []
        return [f"the reverted fix went unnoticed: no replacement of a {typ} (plan: {plan.by_op()})"]
    check.__doc__ = f"a replacement of {typ.split(':')[-1]} (the reverted defect, caught)"
    return check


UPGRADE_FROM, UPGRADE_TO = "1.19.6", "1.20.0"


def upgrade_steps(sc: Scenario) -> list[Step]:
    """A stack that names no Cilium version starts on the previous minor; then it is moved to
    the current one a cluster at a time, as `make upgrade` does (the cluster's own
    ``cilium.version`` first, the stack's version written once at the end)."""
    cfg = sc.config["config"]
    if (cfg.get("kindmesh:cilium") or {}).get("version") or not (CHARTS / f"cilium-{UPGRADE_FROM}.tgz").exists() \
            or any((c.get("cilium") or {}).get("version") for c in cfg["kindmesh:clusters"]):
        return []
    cfg["kindmesh:cilium"] = {**(cfg.get("kindmesh:cilium") or {}), "version": UPGRADE_FROM}
    steps = []
    for c in cfg["kindmesh:clusters"]:
        name = c["name"]

        def stage(doc: dict[str, Any], name: str = name) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            for cl in doc["config"]["kindmesh:clusters"]:
                if cl["name"] == name:
                    cl["cilium"] = {**(cl.get("cilium") or {}), "version": UPGRADE_TO}
            return doc
        steps.append(Step(f"upgrade {name} to {UPGRADE_TO}", "up", expect_stage(name), edit=stage))

    def finish(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["config"]["kindmesh:cilium"]["version"] = UPGRADE_TO
        for cl in doc["config"]["kindmesh:clusters"]:
            cilium = cl.get("cilium") or {}
            cilium.pop("version", None)
            if cilium:
                cl["cilium"] = cilium
            else:
                cl.pop("cilium", None)
        return doc
    steps.append(Step(f"upgrade: stack version {UPGRADE_TO} written", "up", expect_nothing, edit=finish))
    return steps


def expect_stage(name: str) -> Expect:
    def check(plan: Plan, sc: Scenario) -> list[str]:
        problems = []
        for urn, op in sorted(plan.changed().items()):
            if op == "update" and host_image_prepull(urn, plan):
                continue  # the host pre-pulls the new version's images too (not a cluster's resource)
            if op != "update" or owner(urn, sc.cluster_names()) != name or plan.types[urn] not in UPDATABLE_ON_PEER_CHANGE:
                problems.append(f"{op} of {short(urn)} (a stage may only update {name}'s release and gates)")
        if not any(plan.types[u] == "kubernetes:helm.sh/v3:Release" for u in plan.changed()):
            problems.append(f"{name}'s Cilium release was not updated")
        return problems
    check.__doc__ = f"updates of {name}'s release and gates (and the host's image pre-pull) only"
    return check


def host_image_prepull(urn: str, plan: Plan) -> bool:
    """The stack's one pre-pull of every planned image on the host (``<stack>-host-images-pull``)."""
    return plan.types.get(urn) == "command:local:Command" and urn.rsplit("::", 1)[-1].endswith("host-images-pull")


def toggle_hubble_ui(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    cilium = dict(doc["config"].get("kindmesh:cilium") or {})
    cilium["hubbleUi"] = not cilium.get("hubbleUi", True)
    doc["config"]["kindmesh:cilium"] = cilium
    return doc


def check_kubectl(sc: Scenario) -> list[str]:
    """kubectl works with the kubeconfig file the stack wrote, for every cluster's context
    (the single-cluster example exports its kubeconfig instead: kind's context ``kind-solo``)."""
    assert sc.world is not None
    kc = sc.kubeconfig_file()
    contexts = sc.cluster_names()
    if sc.example and sc.project.name == "single-cluster":
        out = sc.pulumi(["stack", "output", "kubeconfig", "--show-secrets"])
        if out.returncode != 0:
            return [f"pulumi stack output kubeconfig failed: {out.stderr.strip()[:300]}"]
        kc = sc.workdir / "exported.kubeconfig"
        kc.write_text(out.stdout)
        kc.chmod(0o600)
        contexts = [f"kind-{c}" for c in contexts]
    if not kc.exists():
        return [f"no kubeconfig file at {kc}"]
    problems = []
    for name in contexts:
        proc = subprocess.run(["kubectl", "--kubeconfig", str(kc), "--context", name, "get", "nodes", "-o", "name"],
                              env=sc.env, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 or "node/" not in proc.stdout:
            problems.append(f"kubectl --context {name} get nodes failed: {proc.stderr.strip()[:300]}")
    return problems


def check_diff_secrets(sc: Scenario) -> list[str]:
    """preview --diff: Cilium values readable, and only the CA key shown as [secret]."""
    out = sc.last_output
    problems = []
    if "hubble" not in out:
        problems.append("the diff does not show Cilium's values (no 'hubble' in it)")
    secret_lines = [ln.strip() for ln in out.splitlines() if "[secret]" in ln]
    for ln in secret_lines:
        key = ln.lstrip("~+-= ").split(":", 1)[0].strip().strip('"')
        if key not in ("key", "values", "tls", "ca"):
            problems.append(f"[secret] shown for something that is not the CA key: {ln[:160]}")
    return problems


def run_step(sc: Scenario, step: Step, logdir: Path) -> dict[str, Any]:
    if step.edit is not None:
        sc.config = step.edit(sc.config)
        (sc.workdir / f"Pulumi.{sc.stack}.yaml").write_text(yaml.safe_dump(sc.config, sort_keys=False))
    if step.custom is not None:
        t0 = time.monotonic()
        problems = step.custom(sc, logdir)
        sc.plans.append(Plan())
        return {"scenario": sc.name, "step": step.name, "command": step.name, "expected": step.custom.__doc__ or "",
                "summary": {}, "changes": {}, "seconds": round(time.monotonic() - t0, 1), "ok": not problems,
                "problems": problems, "notes": [], "engine_order": None}
    slug = f"{len(sc.plans):02d}-{step.command}"
    event_log = logdir / f"{sc.name}-{slug}.events.jsonl"
    args = {"preview": ["preview"], "diff": ["preview", "--diff"], "up": ["up", "--yes", "--skip-preview"],
            "refresh": ["refresh", "--yes", "--skip-preview"], "destroy": ["destroy", "--yes", "--skip-preview"]}[step.command]
    t0 = time.monotonic()
    proc = sc.pulumi(args, event_log=event_log)
    seconds = time.monotonic() - t0
    (logdir / f"{sc.name}-{slug}.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    sc.last_output = proc.stdout
    plan = read_plan(event_log)
    sc.plans.append(plan)
    notes: list[str] = []
    if step.edit is not None or sc.config != sc.applied:
        for urn, op in list(plan.ops.items()):
            if op == "update" and plan.types.get(urn) == DYNAMIC_PROVIDER:
                plan.ops[urn] = "same"
                notes.append(f"set aside: update of {short(urn)} (the engine passes it the whole stack config)")
    problems: list[str] = []
    if proc.returncode != 0:
        problems.append(f"pulumi {' '.join(args)} exited {proc.returncode}:\n{failure_lines(proc.stdout + proc.stderr)}")
    elif step.command in ("up", "destroy"):
        sc.applied = copy.deepcopy(sc.config)
    for line in (proc.stdout + proc.stderr).splitlines():
        if "expected to have version" in line:  # the engine runs a plugin other than the pinned one
            problems.append(f"plugin version warning: {line.strip()[:300]}")
    if step.expect is not None and not problems:
        problems += step.expect(plan, sc)
    if step.after is not None and not problems:
        problems += step.after(sc)
    order: Any = None
    if step.name == "up" and plan.order and not sc.example:
        # the first up: the order the engine actually ran the steps in, next to the model (bench/model.py)
        out_json = event_log.with_suffix(".order.json")
        scale = sc.extra_env.get(durations.SCALE_ENV)  # a timed world: the model at the same scale
        proc = subprocess.run([sys.executable, "-m", "bench.engine_order", str(event_log), "--raw",
                               str(sc.workdir / f"Pulumi.{sc.stack}.yaml"), "--json", str(out_json),
                               *(["--scale", scale] if scale else []), "--parallel", str(engine_parallel(sc.env))],
                              cwd=REPO, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
        (logdir / f"{sc.name}-{slug}.order.txt").write_text(proc.stdout + proc.stderr)
        order = order_summary(out_json, proc)
        if "error" in order:
            problems.append(f"the engine-order comparison with bench/model.py failed: {order['error'][-300:]}")
    return {"scenario": sc.name, "step": step.name, "command": "pulumi " + " ".join(args),
            "expected": (step.expect.__doc__ or "").strip() if step.expect else "",
            "summary": plan.summary, "changes": plan.by_op(), "seconds": round(seconds, 1),
            "ok": not problems, "problems": problems, "notes": notes, "engine_order": order}


def engine_parallel(env: dict[str, str]) -> int:
    """The --parallel a `pulumi up` in ``env`` runs with: PULUMI_PARALLEL, else the engine's
    default, 4 × GOMAXPROCS (the CPUs this process may use)."""
    with contextlib.suppress(ValueError):
        if int(env.get("PULUMI_PARALLEL") or 0) > 0:
            return int(env["PULUMI_PARALLEL"])
    return 4 * len(os.sched_getaffinity(0))


def failure_lines(output: str, errors: int = 20, tail: int = 8) -> str:
    """What a failed step said, in a few lines: the engine's error lines first (a failed `up`
    ends with its config diff and summary, which would push them out of a plain tail)."""
    lines = output.strip().splitlines()
    wanted = [ln for ln in lines if re.search(r"\berror\b|ERROR|failed|Exception", ln)]
    picked = wanted[:errors] + (["        […]"] if len(wanted) > errors else [])
    return "\n".join([*picked, "        --- the end of the output ---", *lines[-tail:]])


def order_summary(path: Path, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The engine's real order against the model's, in a few numbers (the whole report beside it).
    The world's durations are not the model's (a simulated cluster starts in seconds): what
    counts is the order — edges the engine did not honour, and waits the model does not know."""
    if proc.returncode != 0 or not path.exists():
        return {"error": (proc.stderr or proc.stdout).strip()[-500:]}
    rep = json.loads(path.read_text())
    return {"report": str(path), "steps": len(rep["rows"]), "modelled_total_s": rep["modelled_total"],
            "engine_total_s": rep["actual_total"], "edges_not_real": len(rep["edges_not_real"]),
            "edges_missing": len(rep["edges_missing"]), "unmodelled": len(rep["unmodelled"]),
            "not_in_log": len(rep["not_in_log"])}


def prepare(sc: Scenario, world: World, root: Path) -> None:
    sc.world = world
    sc.workdir = root / "projects" / re.sub(r"[^A-Za-z0-9._-]", "-", sc.name)  # no ":" (PYTHONPATH splits on it)
    sc.workdir.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=sc.project, capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        if not rel or rel.startswith("Pulumi.") and rel != "Pulumi.yaml":
            continue
        src, dst = sc.project / rel, sc.workdir / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    venv_name = (yaml.safe_load((sc.workdir / "Pulumi.yaml").read_text())["runtime"]["options"]["virtualenv"])
    (sc.workdir / venv_name).symlink_to(Path(sys.executable).parent.parent)
    (sc.workdir / f"Pulumi.{sc.stack}.yaml").write_text(yaml.safe_dump(sc.config, sort_keys=False))
    proc = subprocess.run(["pulumi", "stack", "init", sc.stack, "--secrets-provider", "passphrase", "--non-interactive"],
                          cwd=sc.workdir, env=sc.env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pulumi stack init failed: {proc.stderr}")


def shipped(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / f"Pulumi.{name}.yaml").read_text())


SHIPPED = ("ci", "dev", "trio", "hub", "remote")
EXAMPLES = ("two-cluster-mesh", "single-cluster")
# The clusters each example's code makes; single-cluster writes no kubeconfig file (it exports one).
EXAMPLE_CLUSTERS = {"two-cluster-mesh": ("east", "west"), "single-cluster": ("solo",)}
ALL_SCENARIOS = (*SHIPPED, "mixed", *(f"example:{e}" for e in EXAMPLES), "defects", "faults", "soak", "diagnose",
                 "timing")
MIXED_ENGINE = {"config": {  # a kind cluster and an existing one (the world simulates it), meshed
    "pulumi:disable-default-providers": ["kubernetes", "docker"],
    "kindmesh:clusters": [
        {"name": "k1", "id": 1, "workers": 0},
        {"name": "edge", "id": 7, "source": "existing", "kubeconfig": "(set by the tier)",
         "podSubnet": "10.70.0.0/16", "serviceSubnet": "10.170.0.0/16",
         "meshEndpoint": {"nodePort": 32379, "nodeIPs": ["(set by the tier)"]}},
    ],
    "kindmesh:network": {"subnet": "172.25.0.0/24", "poolSize": 8},
    "kindmesh:mesh": {"routable": True},
    "kindmesh:cilium": {"hubbleUi": False},
}}


def scenarios(selected: list[str], stack_file: Path | None) -> list[Scenario]:
    """The scenarios to run: every shipped stack, the kind + existing mix and both examples
    (or those named), or one stack file."""
    if stack_file is not None:
        doc = with_charts(yaml.safe_load(stack_file.read_text()))
        stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
        return [Scenario(f"file:{stack}", stack, doc)]
    unknown = [s for s in selected if s not in ALL_SCENARIOS and f"example:{s}" not in ALL_SCENARIOS]
    if unknown:
        raise SystemExit(f"engine tier: unknown scenario(s) {unknown}; known: {', '.join(ALL_SCENARIOS)}")
    want = {s if s in ALL_SCENARIOS else f"example:{s}" for s in selected}
    out: list[Scenario] = []
    for name in SHIPPED:
        if not want or name in want:
            out.append(Scenario(name, name, with_charts(shipped(name))))
    if not want or "mixed" in want:
        out.append(Scenario("mixed", "mixed", with_charts(MIXED_ENGINE)))
    if not want or "defects" in want:
        doc = with_charts(shipped("ci"))
        doc["config"]["kindmesh:network"] = {**doc["config"]["kindmesh:network"], "subnet": "172.24.0.0/24"}  # beside ci
        sc = Scenario("defects", "defects", doc,
                      extra_env={"KINDMESH_TIER_REVERT": "gate-triggers,network-options"})
        sc.steps = defect_steps()
        out.append(sc)
    if "faults" in want:  # not in the default set (issue 24 adds the rest of them)
        doc = with_charts(shipped("ci"))
        doc["config"]["kindmesh:network"] = {**doc["config"]["kindmesh:network"], "subnet": "172.22.0.0/24"}
        sc = Scenario("faults", "faults", doc)
        sc.steps = fault_steps()
        out.append(sc)
    if "diagnose" in want:  # make diagnose proven in the world (tests/integration/diagnose_tier.py)
        from tests.integration import diagnose_tier
        sc = Scenario("diagnose", diagnose_tier.STACK, diagnose_tier.config(with_charts(shipped("ci"))))
        sc.steps = diagnose_tier.steps(Step, expect_only("create"), expect_destroyed)
        out.append(sc)
    if "timing" in want:  # not in the default set: N clusters, one N at a time (tests/integration/timing.py)
        for n, parallel in timing.runs():
            label = f"timing:{n}" + ("" if parallel == timing.MAKE_PARALLEL else "-pulumi-default")
            env = {durations.SCALE_ENV: str(timing.SCALE)}
            if parallel:
                env["PULUMI_PARALLEL"] = str(parallel)
            sc = Scenario(label, f"timing{n}" + ("" if parallel == timing.MAKE_PARALLEL else "d"),
                          timing.stack_doc(n, str(CHARTS)), extra_env=env)
            sc.steps = [Step("up", "up", expect_only("create")), Step("destroy", "destroy", expect_destroyed)]
            out.append(sc)
    if "soak" in want:  # opt-in: five up → destroy cycles of ci
        from tests.integration import faults
        doc = with_charts(shipped("ci"))
        doc["config"]["kindmesh:network"] = {**doc["config"]["kindmesh:network"], "subnet": "172.21.0.0/24"}
        sc = Scenario("soak", "soak", doc)
        sc.steps = faults.soak()
        out.append(sc)
    for ex in EXAMPLES:
        if not want or f"example:{ex}" in want:
            doc = {"config": {"kindmesh:charts": {"cilium": str(CHARTS), "metallb": str(CHARTS)}}}
            out.append(Scenario(f"example:{ex}", f"tier-{ex.split('-')[0]}", doc, project=REPO / "examples" / ex,
                                example=True))
    # the longest first: side by side, the short ones fill the tail
    return sorted(out, key=lambda sc: -LENGTH.get(sc.name, 0) if not sc.name.startswith("timing:") else 0)


# Relative length of each scenario (clusters × steps), for the order they start in.
LENGTH = {"trio": 9, "hub": 9, "dev": 7, "ci": 7, "mixed": 6, "remote": 4, "defects": 3, "faults": 3, "soak": 3,
          "diagnose": 4}


def materialize_existing(world: World, sc: Scenario) -> dict[str, Path]:
    """A simulated cluster per existing entry, on a host address of its own: the entry's
    kubeconfig points at it, and the addresses the stack file names for it (``apiServer``,
    ``meshEndpoint.nodeIPs``) are mapped onto that host, so no address of a shipped stack file
    is ever dialled."""
    made = {}
    for c in sc.config["config"].get("kindmesh:clusters") or []:
        if c.get("source") != "existing":
            continue
        path, host = world.start_existing(c["name"], c["podSubnet"], c["serviceSubnet"])
        c["kubeconfig"] = str(path)
        c.pop("context", None)
        if c.get("apiServer"):
            c["apiServer"] = f"{host}:6443"
        endpoint = c.get("meshEndpoint") or {}
        if endpoint.get("nodeIPs"):
            endpoint["nodeIPs"] = [host]
        made[c["name"]] = path
    return made


def sweep(root: Path, grace: float = 10.0) -> list[str]:
    """End every process this run started (they carry KINDMESH_WORLD=<root> in their
    environment: pulumi, its plugins, the program's gate commands, the simulated clusters, the
    fake Docker Engine): TERM, then KILL after ``grace`` seconds. Returns what was still running."""
    needle = f"KINDMESH_WORLD={root}".encode()
    me = os.getpid()

    def ours() -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                env = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in env.split(b"\0"):
                pids.append(int(entry))
        return pids

    found = ours()
    names = []
    for pid in found:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline, delay = time.monotonic() + grace, 0.05
    while time.monotonic() < deadline and any(_running(p) for p in found):
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    for pid in found:
        if _running(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return names


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


STOPPING = threading.Event()  # set on Ctrl-C: the scenarios' workers stop after their current step


def run_scenario(sc: Scenario, world: World, root: Path, logdir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        sc.existing = materialize_existing(world, sc)
        if not sc.steps:
            sc.steps = full_lifecycle(sc)
        prepare(sc, world, root)
    except Exception as exc:  # noqa: BLE001 - reported as the scenario's failure
        rows.append({"scenario": sc.name, "step": "prepare", "ok": False, "problems": [str(exc)[:3000]],
                     "summary": {}, "changes": {}, "seconds": round(time.monotonic() - t0, 1), "command": "",
                     "expected": ""})
        print_row(rows[-1])
        return rows
    for step in sc.steps:
        if STOPPING.is_set():
            return rows
        row = run_step(sc, step, logdir)
        rows.append(row)
        print_row(row)
        if not row["ok"] and step.name in ("preview", "up"):
            break  # nothing after a failed first preview or up means anything
    if sc.plans and not STOPPING.is_set() and (not rows[-1]["ok"] or sc.steps[-1].command != "destroy"):
        sc.pulumi(["destroy", "--yes", "--skip-preview"])  # best effort: the world is torn down anyway
    return rows


def run(selected: list[str], stack_file: Path | None, report: Path, keep: bool, jobs: int = 3) -> int:
    tools = find_tools()
    if tools is None:
        print("engine tier: the real tools are not built: run `make tools` first", file=sys.stderr)
        return 2
    missing = tools.engine_missing()
    how = enter_netns() if os.environ.get(NETNS_ENV) != "1" else "inherited"
    iso = check_isolation()
    print(f"engine tier: network namespace ({how}): interfaces {iso['interfaces']}, outside loopback: {iso['outside']}")
    root = Path(tempfile.mkdtemp(prefix="kmt-", dir="/tmp"))
    logdir = Path(os.environ.get("KINDMESH_TIER_LOGS", REPO / ".integration"))
    logdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    world = World(root, tools)
    t_all = time.monotonic()
    interrupted = False
    try:
        world.start()
        if missing:
            print(f"engine tier: NOT RUN — not built here: {', '.join(missing)} (see docs/integration.md); "
                  "running the cluster tier instead (real API servers, charts, gates; no Pulumi engine)", flush=True)
            rows += run_cluster_tier(world, root, selected, stack_file)
        else:
            # Scenarios run side by side (each its own project, stack and clusters; one world):
            # most of a step is waiting on gates and Helm, not CPU.
            todo = scenarios(selected, stack_file)
            if any(sc.name.startswith("timing:") for sc in todo):
                jobs = 1  # measured one at a time: side by side, one would slow the other
            pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo))))
            try:
                for result in pool.map(lambda sc: run_scenario(sc, world, root, logdir), todo):
                    rows += result
            finally:
                # on Ctrl-C: end the processes first, so the workers' pulumi calls return at once
                if sys.exc_info()[0] is not None:
                    STOPPING.set()
                    sweep(root, grace=5.0)
                pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        interrupted = True
        print("engine tier: interrupted; stopping everything it started", file=sys.stderr, flush=True)
    finally:
        sweep(root, grace=5.0)  # pulumi, plugins, gates first: they talk to the clusters
        world.stop()
        left = sweep(root, grace=5.0)  # anything the world's own stop missed
        leave_mounts()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        if left:
            print(f"engine tier: stopped what was still running: {', '.join(sorted(set(left)))}", flush=True)
    if interrupted:
        return 130
    total = time.monotonic() - t_all
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"seconds": round(total, 1), "tier": "cluster" if missing else "engine",
                                  "engine_missing": missing, "rows": rows, "isolation": iso}, indent=1))
    failed = [r for r in rows if not r["ok"]]
    print_table(rows)
    measured = timing.summarize(rows)
    if measured:
        timing.write(measured, logdir)
        print(timing.table(measured))
    print(f"{'engine' if not missing else 'cluster'} tier: {total:.0f}s; report: {report}")
    print(f"integration: {len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


CLUSTER_TIER_STACKS = ("ci", "dev", "mixed")
MIXED = {"config": {  # a kind cluster and an existing one (the world simulates it), meshed
    "kindmesh:clusters": [
        {"name": "k1", "id": 1, "workers": 0},
        {"name": "edge", "id": 7, "source": "existing", "kubeconfig": "(set by the tier)", "ipam": "kubernetes",
         "apiServer": "10.99.0.1:6443",  # a chart value only (k8sServiceHost): never dialled
         "podSubnet": "10.70.0.0/16", "serviceSubnet": "10.170.0.0/16", "meshEndpoint": {"loadBalancer": {"pool": "10.99.0.10-10.99.0.17"}}},
    ],
    "kindmesh:network": {"subnet": "172.25.0.0/24", "poolSize": 8},
    "kindmesh:mesh": {"routable": True},
    "kindmesh:cilium": {"hubbleUi": False},
}}


def run_cluster_tier(world: World, root: Path, selected: list[str], stack_file: Path | None) -> list[dict[str, Any]]:
    from tests.integration.cluster_tier import ClusterTier, raw_config
    docs: list[tuple[str, dict[str, Any]]] = []
    if stack_file is not None:
        docs.append((stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml"), yaml.safe_load(stack_file.read_text())))
    else:
        docs += [(n, MIXED if n == "mixed" else shipped(n)) for n in CLUSTER_TIER_STACKS if not selected or n in selected]
    rows = []
    for name, doc in docs:
        doc = with_charts(doc)
        workdir = root / "cluster-tier" / name
        workdir.mkdir(parents=True)
        raw = raw_config(doc)
        upgrade = None
        if (CHARTS / f"cilium-{UPGRADE_TO}.tgz").exists() and not (raw.get("cilium") or {}).get("version") \
                and not any((c.get("cilium") or {}).get("version") for c in raw.get("clusters") or []):
            # start where a user who set the mesh up on the previous minor is, then upgrade in place
            raw["cilium"] = dict(raw.get("cilium") or {}, version=UPGRADE_FROM)
            upgrade = UPGRADE_TO
        existing: dict[str, Path] = {}
        for c in raw.get("clusters") or []:
            if c.get("source") == "existing":
                existing[c["name"]] = world.start_existing(c["name"], c["podSubnet"], c["serviceSubnet"])[0]
                c["kubeconfig"] = str(existing[c["name"]])
        env = dict(world.env, PYTHONPATH=str(REPO), KUBECONFIG=str(workdir / "unused-kubeconfig"))
        try:
            tier = ClusterTier(name, raw, env, workdir, existing)
        except Exception as exc:  # noqa: BLE001 - a config the planner refuses is this scenario's failure
            rows.append({"scenario": name, "step": "plan", "seconds": 0, "ok": False, "problems": [str(exc)],
                         "summary": {}, "changes": {}, "command": "", "expected": ""})
            continue
        for r in tier.run(upgrade):
            rows.append({"scenario": r.scenario, "step": r.step, "seconds": r.seconds, "ok": r.ok,
                         "problems": r.problems, "summary": {}, "changes": {}, "command": "", "expected": r.detail})
    return rows


def print_row(row: dict[str, Any]) -> None:
    mark = "ok  " if row["ok"] else "FAIL"
    print(f"  {mark} {row['scenario']:<10} {row['step']:<36} {row['seconds']:>6.1f}s  {fmt_summary(row['summary'])}",
          flush=True)
    for p in row["problems"]:
        print("       " + p.replace("\n", "\n       "), flush=True)


def fmt_summary(summary: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(summary.items())) or "-"


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print(f"{'scenario':<10} {'step':<36} {'result':<6} {'seconds':>7}  engine summary")
    for r in rows:
        print(f"{r['scenario']:<10} {r['step']:<36} {'ok' if r['ok'] else 'FAIL':<6} {r['seconds']:>7.1f}  "
              f"{fmt_summary(r['summary'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.lifecycle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", default=[], help="run only these (ci, dev, trio, hub, remote, mixed)")
    parser.add_argument("--stack-file", type=Path, help="run the lifecycle on this stack file instead")
    parser.add_argument("--report", type=Path, default=REPO / ".integration" / "report.json", help="the JSON report")
    parser.add_argument("--keep", action="store_true", help="keep the world directory (logs of every process)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("KINDMESH_TIER_JOBS", "3")),
                        help="scenarios run side by side (default 3, or $KINDMESH_TIER_JOBS)")
    ns = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job of a
    # non-interactive shell): the clean-up below runs either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run(ns.scenario, ns.stack_file, ns.report, ns.keep, ns.jobs)


if __name__ == "__main__":
    sys.exit(main())
