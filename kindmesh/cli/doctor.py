"""`make doctor`: every host prerequisite checked at once, before Pulumi runs.

    python -m kindmesh.cli.doctor --stack dev          (what `make doctor` and `make up` run)
    python -m kindmesh.cli.doctor --new-stack NAME     (what `make new-stack NAME=...` runs)

Lists every missing or misconfigured prerequisite in one table, each with the command or
link that fixes it: Python, the docker CLI and a daemon this user may reach, Docker's image
store (classic or containerd; both are supported), kind >= v0.30.0, the pulumi CLI,
kubectl, the inotify limits, and free memory/disk for the planned node count of the stack.
Docker, kind, inotify, memory and disk are host needs of kind clusters only: a stack whose
clusters all exist elsewhere (``source: existing``) reports them "not needed".
`--new-stack` writes a docker subnet no other Pulumi.*.yaml of the project uses.
Exit code 0 when nothing blocks `make up`, 1 otherwise; never a traceback for a missing
or broken tool.

No ``pulumi`` import. Tests point it at fake executables on PATH and a fake /proc
(``KINDMESH_PROC_ROOT``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kindmesh.core.config_raw import namespace_problems, strip_namespace
from kindmesh.core.model import ConfigError, StackPlan
from kindmesh.core.naming import default_subnet, free_subnet
from kindmesh.core.planner import load_plan
from kindmesh.core.versions import NEWEST_KIND, fmt_release, kind_node_image
from kindmesh.stacks import preflight
from kindmesh.stacks.preflight import INOTIFY, MIN_KIND, parse_kind_version

PY_MIN = (3, 11)  # the one floor: pyproject `requires-python`, README, Makefile PY_MIN

# Estimates (not measurements) for a kind node running kindmesh's stack: kubelet,
# containerd, Cilium agent, and on control planes the API server, etcd, the Cilium
# operator, clustermesh-apiserver, Hubble Relay/UI and MetalLB. The e2e replaces them
# with measured figures once it has run on a Docker host.
MEM_CONTROL_PLANE_MIB = 1536
MEM_WORKER_MIB = 768
DISK_BASE_GIB = 4.0  # node image (~1 GiB unpacked) + host-pulled images, once per host
DISK_PER_NODE_GIB = 2.0  # node container layer, images loaded into the node, logs, etcd
MIN_CORES = 2

INSTALL = {
    "docker": "install Docker Engine: https://docs.docker.com/engine/install/",
    "kind": "install kind v{kind}+: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "pulumi": "install the Pulumi CLI: https://www.pulumi.com/docs/iac/download-install/ "
              "(curl -fsSL https://get.pulumi.com | sh)",
    "kubectl": "install kubectl: https://kubernetes.io/docs/tasks/tools/#kubectl",
}
MIN_API_CGROUPNS = (1, 41)  # kind's `--cgroupns=private` (Docker 20.10)
MIN_API_PLATFORM_SAVE = (1, 48)  # `docker save --platform` (Docker 28)
MIN_KERNEL = (5, 10)  # Cilium's kube-proxy replacement
MIN_KERNEL_KIND = (5, 14)  # socket LB in kind nodes with cgroup v1 net_cls/net_prio in use
CGROUP_V2_FIX = ("boot with cgroup v2: add systemd.unified_cgroup_hierarchy=1 to GRUB_CMDLINE_LINUX in "
                 "/etc/default/grub, run `sudo update-grub` and reboot (Debian 11+, Ubuntu 21.10+ and Fedora 31+ "
                 "use cgroup v2 by default)")
CGROUPNS_FIX = ('set "default-cgroupns-mode": "private" in /etc/docker/daemon.json and restart docker '
                "(`sudo systemctl restart docker`); check with `docker info` (Security Options: cgroupns)")
KERNEL_FIX = "upgrade the kernel (Debian 12 ships 6.1, Ubuntu 22.04 5.15) and reboot"
NET_CLS_FIX = ("boot a kernel >= 5.14, or turn the cgroup v1 net_cls/net_prio controllers off: add "
               "cgroup_no_v1=net_cls,net_prio (or cgroup_no_v1=all) to GRUB_CMDLINE_LINUX in /etc/default/grub, "
               "`sudo update-grub`, reboot")
DOCKER_GROUP_FIX = (
    "sudo usermod -aG docker $USER, then log out and back in (or run `newgrp docker`); "
    "or use rootless Docker: https://docs.docker.com/engine/security/rootless/"
)
STACK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Finding:
    name: str
    status: str  # "ok", "warn" (does not block), "FAIL"
    detail: str
    fix: str = ""


@dataclass
class Ran:
    rc: int
    out: str
    err: str


def run(*args: str, timeout: float = 30) -> Ran | str:
    """Run a tool; a string says why it could not run at all (never raises)."""
    try:
        proc = subprocess.run(list(args), capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return "not found on PATH"
    except PermissionError:
        return "found but not executable (permission denied)"
    except OSError as err:
        return f"cannot be run: {err.strerror or err}"
    except subprocess.TimeoutExpired:
        return f"did not answer within {timeout:.0f}s"
    return Ran(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


def _last_line(text: str, limit: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:limit]


# ----------------------------------------------------------------------------- checks
def check_python(version: tuple[int, ...] | None = None) -> Finding:
    v = tuple(version or sys.version_info[:3])
    shown = ".".join(map(str, v))
    want = ".".join(map(str, PY_MIN))
    if v[:2] < PY_MIN:
        return Finding("python", "FAIL", f"{shown} ({sys.executable}); kindmesh needs >= {want}",
                       f"install Python >= {want}, then `make clean` and `make PYTHON=python3.X ...`")
    return Finding("python", "ok", f"{shown} (needs >= {want})")


def check_docker(docker: str = "docker") -> tuple[list[Finding], dict[str, Any] | None]:
    res = run(docker, "info", "--format", "{{json .}}")
    if isinstance(res, str):
        return [Finding("docker", "FAIL", f"docker CLI {res}", INSTALL["docker"])], None
    info: dict[str, Any] | None = None
    try:
        parsed = json.loads(res.out) if res.out.strip() else None
        info = parsed if isinstance(parsed, dict) else None
    except json.JSONDecodeError:
        info = None
    said = f"{res.err}\n{res.out}"
    if res.rc != 0 or info is None or not info.get("ServerVersion"):
        if "permission denied" in said.lower():
            return [Finding("docker", "FAIL",
                            f"this user may not use the Docker daemon: {_last_line(res.err or res.out)}",
                            DOCKER_GROUP_FIX)], None
        return [Finding("docker", "FAIL", f"Docker daemon not reachable: {_last_line(res.err or res.out)}",
                        "start it (sudo systemctl start docker) and check `docker info`")], None
    findings = [Finding("docker", "ok", f"Engine {info.get('ServerVersion')}, reachable by this user")]
    findings.append(Finding("image store", "ok", describe_image_store(info)))
    return findings, info


def engine_api(docker: str = "docker") -> tuple[int, int] | None:
    """The daemon's Engine API version (``docker version``: Server.APIVersion), None when unknown."""
    res = run(docker, "version", "--format", "{{.Server.APIVersion}}")
    if isinstance(res, str) or res.rc != 0:
        return None
    return parse_minor(res.out)


def parse_minor(text: str) -> tuple[int, int] | None:
    """``1.51`` / ``6.1.0-28-amd64`` -> (1, 51) / (6, 1)."""
    m = re.match(r"\s*v?(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def uses_containerd_store(info: dict[str, Any]) -> bool:
    return describe_image_store(info).startswith("containerd")


def _v(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def check_engine_api(info: dict[str, Any], api: tuple[int, int] | None) -> Finding:
    """The pre-pull on the containerd image store runs ``docker save --platform`` (Engine API >= 1.48)."""
    shown = _v(api) if api else "unknown"
    if not uses_containerd_store(info):
        return Finding("engine API", "ok", f"{shown} (classic image store: no `docker save --platform` needed)")
    if api is None:
        return Finding("engine API", "warn",
                       f"could not read the Engine API version; the containerd image store's pre-pull runs "
                       f"`docker save --platform`, which needs API >= {_v(MIN_API_PLATFORM_SAVE)} (Docker 28)",
                       "check `docker version`")
    if api < MIN_API_PLATFORM_SAVE:
        return Finding("engine API", "FAIL",
                       f"{shown} < {_v(MIN_API_PLATFORM_SAVE)}: on the containerd image store the pre-pull runs "
                       "`docker save --platform`, which this daemon does not support",
                       f"upgrade Docker Engine to 28 or newer ({INSTALL['docker'].split(': ', 1)[1]}); or set "
                       "kindmesh:kind.prePull: false (each node then pulls its own images)")
    return Finding("engine API", "ok", f"{shown} (containerd image store: `docker save --platform` needs "
                                       f">= {_v(MIN_API_PLATFORM_SAVE)})")


def check_cgroup_v2(info: dict[str, Any] | None) -> Finding:
    """Cilium's socket LB (kube-proxy replacement) on kind needs cgroup v2 (Cilium's kind guide)."""
    version = str((info or {}).get("CgroupVersion") or "")
    driver = (info or {}).get("CgroupDriver") or "?"
    if version == "2":
        return Finding("cgroup v2", "ok", f"cgroup v2 (driver {driver})")
    if version == "1":
        return Finding("cgroup v2", "FAIL",
                       "the host runs cgroup v1: Cilium's kube-proxy replacement (socket LB) on kind needs cgroup v2",
                       CGROUP_V2_FIX)
    return Finding("cgroup v2", "warn", "unknown: Docker did not report its cgroup version (docker not reachable?)",
                   CGROUP_V2_FIX)


def check_cgroupns(info: dict[str, Any] | None, api: tuple[int, int] | None) -> Finding:
    """kind nodes need cgroup namespaces of their own (Cilium's kind guide). kind asks for
    ``--cgroupns=private`` for every node (Engine API >= 1.41, Docker 20.10); the daemon's default
    (``docker info`` SecurityOptions ``name=cgroupns``) is private on cgroup v2."""
    options = [str(o) for o in (info or {}).get("SecurityOptions") or []]
    default = "private" if any(o.split(",")[0] == "name=cgroupns" for o in options) else "host"
    if info is None:
        return Finding("cgroupns", "warn", "unknown: docker not reachable", CGROUPNS_FIX)
    if api is not None and api < MIN_API_CGROUPNS:
        return Finding("cgroupns", "FAIL",
                       f"Engine API {_v(api)} < {_v(MIN_API_CGROUPNS)}: kind cannot give its nodes private cgroup "
                       "namespaces (`--cgroupns=private`), which Cilium on kind needs",
                       "upgrade Docker Engine (20.10 or newer; 28+ recommended): " + INSTALL["docker"].split(": ", 1)[1])
    if api is None and default != "private":
        return Finding("cgroupns", "warn",
                       "cannot tell whether kind nodes get private cgroup namespaces (Engine API unknown, daemon "
                       "default host)", CGROUPNS_FIX)
    return Finding("cgroupns", "ok",
                   f"kind nodes run in private cgroup namespaces (kind passes --cgroupns=private; daemon default: "
                   f"{default})")


def kernel_release(info: dict[str, Any] | None, proc_root: Path) -> str | None:
    """The kernel the kind nodes share: the daemon's (``docker info`` KernelVersion), else this host's."""
    text = str((info or {}).get("KernelVersion") or "")
    if not text:
        try:
            text = (proc_root / "sys/kernel/osrelease").read_text().strip()
        except OSError:
            return None
    return text or None


def v1_net_controllers(proc_root: Path) -> list[str] | None:
    """cgroup v1 controllers net_cls/net_prio that are mounted on a v1 hierarchy (``/proc/cgroups``
    hierarchy column non-zero); None when that cannot be read."""
    try:
        lines = (proc_root / "cgroups").read_text().splitlines()
    except OSError:
        return None
    on = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[0] in ("net_cls", "net_prio") and parts[1] != "0" and parts[3] == "1":
            on.append(f"{parts[0]} (hierarchy {parts[1]})")
    return on


def check_kernel(info: dict[str, Any] | None, proc_root: Path) -> Finding:
    """kube-proxy replacement needs kernel >= 5.10; Cilium's socket LB on kind needs >= 5.14, or
    the cgroup v1 net_cls/net_prio controllers off (Cilium's kind guide; kernel commit 8520e224f547)."""
    release = kernel_release(info, proc_root)
    version = parse_minor(release or "")
    if release is None or version is None:
        return Finding("kernel", "warn", f"unknown kernel version ({release or 'not readable'})",
                       f"kindmesh needs Linux >= {_v(MIN_KERNEL)}, and >= {_v(MIN_KERNEL_KIND)} on kind unless "
                       "net_cls/net_prio are off")
    if version < MIN_KERNEL:
        return Finding("kernel", "FAIL",
                       f"{release} < {_v(MIN_KERNEL)}: Cilium's kube-proxy replacement needs Linux {_v(MIN_KERNEL)} "
                       "or newer", KERNEL_FIX)
    if version >= MIN_KERNEL_KIND:
        return Finding("kernel", "ok", f"{release} (needs >= {_v(MIN_KERNEL)}; >= {_v(MIN_KERNEL_KIND)} on kind)")
    mounted = v1_net_controllers(proc_root)
    if mounted is None:
        return Finding("kernel", "warn",
                       f"{release} < {_v(MIN_KERNEL_KIND)} and /proc/cgroups is not readable: on kind, Cilium's socket "
                       "LB needs the cgroup v1 controllers net_cls/net_prio off", NET_CLS_FIX)
    if mounted:
        return Finding("kernel", "FAIL",
                       f"{release} < {_v(MIN_KERNEL_KIND)} with cgroup v1 {', '.join(mounted)} mounted: on kind, "
                       "Cilium's socket LB needs Linux >= 5.14 or net_cls/net_prio off", NET_CLS_FIX)
    return Finding("kernel", "ok", f"{release} (< {_v(MIN_KERNEL_KIND)}, but net_cls/net_prio are off)")


def describe_image_store(info: dict[str, Any]) -> str:
    """Classic graph driver or containerd image store (the default on new Docker 29 installs)."""
    status = info.get("DriverStatus") or []
    pairs = {str(p[0]): str(p[1]) for p in status if isinstance(p, list | tuple) and len(p) == 2}
    driver = str(info.get("Driver") or "?")
    if "containerd.snapshotter" in pairs.get("driver-type", ""):
        return f"containerd image store (snapshotter {driver}); supported"
    return f"classic image store (storage driver {driver}); supported"


def check_kind(kind: str = "kind") -> Finding:
    want = ".".join(map(str, MIN_KIND))
    res = run(kind, "version")
    if isinstance(res, str):
        return Finding("kind", "FAIL", f"kind {res}", INSTALL["kind"].format(kind=want))
    version = parse_kind_version(res.out)
    if res.rc != 0 or version is None:
        return Finding("kind", "FAIL", f"`kind version` did not answer as expected: {_last_line(res.err or res.out)}",
                       INSTALL["kind"].format(kind=want))
    shown = ".".join(map(str, version))
    if version < MIN_KIND:
        return Finding("kind", "FAIL", f"v{shown} is too old; kindmesh needs v{want} or newer (node images are "
                       "built for their kind release)", INSTALL["kind"].format(kind=want))
    image, note = kind_node_image(version)
    if note:
        return Finding("kind", "warn", note, f"or install kind {fmt_release(NEWEST_KIND)}")
    return Finding("kind", "ok", f"v{shown} (needs >= v{want}); node image {image.split('@')[0]}")


def check_tool(name: str, *args: str) -> Finding:
    res = run(name, *args)
    if isinstance(res, str):
        return Finding(name, "FAIL", f"{name} {res}", INSTALL[name])
    if res.rc != 0:
        return Finding(name, "FAIL", f"`{name} {' '.join(args)}` failed: {_last_line(res.err or res.out)}",
                       INSTALL[name])
    return Finding(name, "ok", (res.out.strip().splitlines() or ["ok"])[0][:120])


def check_inotify(proc_root: Path, clusters: int) -> Finding:
    low, have_all = [], []
    for key, want in INOTIFY.items():
        try:
            have = int((proc_root / "sys/fs/inotify" / key).read_text().strip())
        except (OSError, ValueError):
            continue
        have_all.append(f"{key}={have}")
        if have < want:
            low.append((key, have, want))
    if not low:
        return Finding("inotify", "ok", ", ".join(have_all) or "not readable here (skipped)")
    settings = " ".join(f"fs.inotify.{k}={w}" for k, _, w in low)
    found = ", ".join(f"fs.inotify.{k} is {h} (< {w})" for k, h, w in low)
    fix = (f"sudo sysctl -w {settings}; to persist: printf '%s\\n' "
           + " ".join(f"fs.inotify.{k}={w}" for k, _, w in low)
           + " | sudo tee /etc/sysctl.d/99-kindmesh.conf")
    # One cluster runs on the defaults; several kind clusters exhaust them.
    return Finding("inotify", "FAIL" if clusters >= 2 else "warn", found, fix)


def meminfo_available_mib(proc_root: Path) -> int | None:
    try:
        for line in (proc_root / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def kind_clusters(plan: StackPlan) -> list[Any]:
    """The plan's kind clusters: the only ones that run on (and need) this host."""
    return [c for c in plan.clusters if c.source == "kind"]


def need_for(plan: StackPlan) -> tuple[int, int, float]:
    """(nodes, MiB, GiB) estimated for the kind clusters of a plan (existing ones run elsewhere)."""
    kinds = kind_clusters(plan)
    nodes = sum(1 + c.workers for c in kinds)
    mib = sum(MEM_CONTROL_PLANE_MIB + c.workers * MEM_WORKER_MIB for c in kinds)
    return nodes, mib, DISK_BASE_GIB + nodes * DISK_PER_NODE_GIB


def check_memory(proc_root: Path, plan: StackPlan) -> Finding:
    nodes, need, _ = need_for(plan)
    have = meminfo_available_mib(proc_root)
    basis = (f"estimate {MEM_CONTROL_PLANE_MIB} MiB per control plane + {MEM_WORKER_MIB} MiB per worker "
             f"= {need} MiB for {nodes} nodes")
    if have is None:
        return Finding("memory", "warn", f"MemAvailable not readable; {basis}")
    if have < need:
        return Finding("memory", "FAIL", f"{have} MiB available; {basis}",
                       "free memory, or plan fewer clusters/workers (kindmesh:clusters[].workers: 0)")
    return Finding("memory", "ok", f"{have} MiB available; {basis}")


def check_disk(path: str | None, plan: StackPlan) -> Finding:
    """Free space where the daemon keeps its data (``docker info`` DockerRootDir); unknown when
    the daemon did not say, or that directory is not visible from here (a remote daemon)."""
    nodes, _, need = need_for(plan)
    basis = (f"estimate {DISK_BASE_GIB:g} GiB + {DISK_PER_NODE_GIB:g} GiB per node = {need:g} GiB "
             f"for {nodes} nodes")
    if not path:
        return Finding("disk", "warn", f"free space unknown: Docker's data root is unknown (docker not reachable); "
                                       f"{basis}", "run `make doctor` again once `docker info` works")
    try:
        free = shutil.disk_usage(path).free / 2**30
    except OSError as err:
        return Finding("disk", "warn", f"free space unknown: cannot read Docker's data root {path} from here "
                                       f"({err.strerror or err}); {basis}",
                       "check the daemon's disk yourself (`docker system df`, `df -h` on the Docker host)")
    if free < need:
        return Finding("disk", "FAIL", f"{free:.1f} GiB free on {path} (Docker's data root); {basis}",
                       "free disk space (e.g. `docker system prune`) or plan fewer nodes")
    return Finding("disk", "ok", f"{free:.1f} GiB free on {path} (Docker's data root); {basis}")


def check_network(plan: StackPlan, docker: str) -> Finding:
    """The stack's docker subnet against the host's docker networks (the preflight's own rules):
    another network on an overlapping subnet is named; this stack's live network must still
    match the plan (subnet, name, MTU)."""
    host = preflight.Host(docker=docker, timeout=30)
    networks = preflight.inspect_networks(host)
    problems = preflight.network_problems(plan, networks, preflight.default_mtu(host))
    subnet = plan.network.subnet
    if problems:
        return Finding("network", "FAIL", "\n".join(problems), "each problem above names its way out")
    own = [n for n in networks if n.get("Name") == plan.network.name]
    if own:
        return Finding("network", "ok", f"{plan.network.name} ({subnet}) exists: this stack's, as planned")
    return Finding("network", "ok", f"{subnet} is free ({len(networks)} docker networks checked)")


def load_stack_plan(stack: str, root: Path | None = None) -> tuple[StackPlan | None, Finding]:
    path = (root or Path.cwd()) / f"Pulumi.{stack}.yaml"  # the Pulumi project: where make runs
    if not path.is_file():
        return None, Finding("stack", "FAIL", f"no {path.name} for stack {stack!r}",
                             f"make new-stack NAME={stack} (or pick an existing Pulumi.<stack>.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        config = data.get("config") or {} if isinstance(data, dict) else {}
        typos = namespace_problems(config if isinstance(config, dict) else {})
        try:
            plan = load_plan(strip_namespace(config), stack=stack)
        except ConfigError as err:
            raise ConfigError(typos + err.problems) from None
        if typos:
            raise ConfigError(typos)
    except ConfigError as err:
        text = str(err)
        return None, Finding("stack", "FAIL", f"{path.name} is invalid:\n{text[:4000]}", "fix the keys named above")
    except (yaml.YAMLError, OSError, AttributeError, TypeError) as err:
        return None, Finding("stack", "FAIL", f"{path.name} cannot be read: {str(err)[:300]}",
                             "fix the YAML (compare with Pulumi.dev.yaml)")
    kinds = kind_clusters(plan)
    nodes = sum(1 + c.workers for c in kinds)
    existing = len(plan.clusters) - len(kinds)
    shape = f"{len(kinds)} kind clusters ({nodes} nodes on this host)"
    if existing:
        shape += f", {existing} existing clusters"
    return plan, Finding("stack", "ok", f"{stack}: {len(plan.clusters)} clusters: {shape}")


NOT_NEEDED = "not needed: no kind clusters in this stack (its clusters exist elsewhere)"
HOST_ROWS = ("docker", "image store", "cgroup v2", "cgroupns", "kernel", "kind")  # kind clusters' host needs
CAPACITY_ROWS = ("inotify", "memory", "disk", "network")


def has_kind_clusters(stack: str, root: Path | None = None) -> bool:
    """Whether the stack file lists a kind cluster (``source`` kind, the default). Read from the
    file itself, so an existing-only stack whose plan fails here (e.g. a kubeconfig path not on
    this machine) is still recognised; True when that cannot be told (check everything)."""
    path = (root or Path.cwd()) / f"Pulumi.{stack}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError):
        return True
    config = data.get("config") if isinstance(data, dict) else None
    clusters = config.get("kindmesh:clusters") if isinstance(config, dict) else None
    if not isinstance(clusters, list) or not clusters:
        return True
    return any(not isinstance(c, dict) or c.get("source", "kind") != "existing" for c in clusters)


def diagnose(stack: str, *, root: Path | None = None, proc_root: Path | None = None) -> list[Finding]:
    """Every check at once. The host checks (docker, image store, kind, inotify, memory, disk)
    only when the stack has kind clusters, or when its plan cannot be read (then assume it has)."""
    proc_root = proc_root or Path(os.environ.get("KINDMESH_PROC_ROOT", "/proc"))
    plan, stack_finding = load_stack_plan(stack, root)
    local = bool(kind_clusters(plan)) if plan is not None else has_kind_clusters(stack, root)
    findings = [check_python()]
    info: dict[str, Any] | None = None
    docker = os.environ.get("KINDMESH_DOCKER", "docker")
    if local:
        docker_findings, info = check_docker(docker)
        findings += docker_findings
        api = engine_api(docker) if info is not None else None
        if info is not None:
            findings.append(check_engine_api(info, api))
        findings += [check_cgroup_v2(info), check_cgroupns(info, api), check_kernel(info, proc_root)]
        findings.append(check_kind(os.environ.get("KINDMESH_KIND", "kind")))
    else:
        findings += [Finding(name, "ok", NOT_NEEDED) for name in HOST_ROWS]
    findings.append(check_tool("pulumi", "version"))
    findings.append(check_tool("kubectl", "version", "--client"))
    findings.append(stack_finding)
    if plan is not None and plan.config.warnings:  # versions kindmesh accepts but has not validated
        findings.append(Finding("versions", "warn", "\n".join(plan.config.warnings),
                                "use a validated version (docs/versions.md)"))
    if not local:
        findings += [Finding(name, "ok", NOT_NEEDED) for name in CAPACITY_ROWS]
        return findings
    findings.append(check_inotify(proc_root, len(kind_clusters(plan)) if plan else 2))
    cores = os.cpu_count() or 1
    findings.append(Finding("cpu", "ok" if cores >= MIN_CORES else "warn",
                            f"{cores} cores (estimate: 2 or more for a 2-cluster mesh)"))
    if plan is not None:
        findings.append(check_memory(proc_root, plan))
        findings.append(check_disk(str((info or {}).get("DockerRootDir") or "") or None, plan))
        if info is not None:
            findings.append(check_network(plan, docker))
    return findings


def render(findings: list[Finding]) -> str:
    width = max(len(f.name) for f in findings)
    lines = []
    for f in findings:
        detail = f.detail.replace("\n", "\n" + " " * (width + 9))
        lines.append(f"  {f.status:<4}  {f.name:<{width}}  {detail}")
        if f.fix and f.status != "ok":
            lines.append(f"  {'':<4}  {'':<{width}}  fix: {f.fix}")
    failed = sum(f.status == "FAIL" for f in findings)
    lines.append(f"{failed} problem(s) found" + (": fix them, then run `make up` again" if failed else "; ready"))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- new stack
NEW_STACK_TEMPLATE = """\
# {name}: two clusters, full mesh (written by `make new-stack NAME={name}`; edit freely).
config:
  # Nothing may fall back to the ambient KUBECONFIG or DOCKER_HOST: every Kubernetes and
  # Docker resource names its provider explicitly. Keep this lock.
  pulumi:disable-default-providers:
    - kubernetes
    - docker
  kindmesh:clusters:
    - name: one
      id: 1
      workers: 0
    - name: two
      id: 2
      workers: 0
  kindmesh:mesh:
    topology: full
  # A docker subnet no other stack of this project uses (chosen by `make new-stack`).
  kindmesh:network:
    subnet: {subnet}
"""
# /16s new stacks get: 172.16.0.0/12 without docker0's default (172.17) and kind's own network (172.18)
NEW_STACK_SUBNETS = tuple(f"172.{n}.0.0/16" for n in range(16, 32) if n not in (17, 18))


def used_subnets(root: Path) -> list[ipaddress.IPv4Network]:
    """Docker subnets the project's stacks use: network.subnet, or the stack-name default when
    the stack has kind clusters and sets none. Unreadable files are skipped."""
    used: list[ipaddress.IPv4Network] = []
    for path in sorted(root.glob("Pulumi.*.yaml")):
        stack = path.name[len("Pulumi."):-len(".yaml")]
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError):
            continue
        config = data.get("config") if isinstance(data, dict) else None
        if not isinstance(config, dict):
            continue
        network = config.get("kindmesh:network")
        subnet = network.get("subnet") if isinstance(network, dict) else None
        if subnet is None:
            clusters = config.get("kindmesh:clusters")
            has_kind = isinstance(clusters, list) and any(
                isinstance(c, dict) and c.get("source", "kind") == "kind" for c in clusters)
            subnet = default_subnet(stack) if has_kind else None
        if not isinstance(subnet, str):
            continue
        try:
            net = ipaddress.ip_network(subnet.strip(), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            used.append(net)
    return used


def pick_subnet(name: str, used: list[ipaddress.IPv4Network]) -> str | None:
    """First of NEW_STACK_SUBNETS overlapping none of ``used`` (the planner's probe by name hash)."""
    return free_subnet(name, used, NEW_STACK_SUBNETS)


def new_stack(name: str, root: Path | None = None) -> tuple[int, str]:
    if not name:
        return 2, "usage: make new-stack NAME=<stack name>"
    if not STACK_NAME_RE.match(name):
        return 2, (f"invalid stack name {name[:100]!r}: use letters, digits, '-', '_' or '.', "
                   "starting with a letter or digit (at most 100 characters)")
    root = root or Path.cwd()
    path = root / f"Pulumi.{name}.yaml"
    if path.exists():
        return 1, f"{path.name} already exists; not overwriting it (edit it, or pick another NAME)"
    subnet = pick_subnet(name, used_subnets(root))
    if subnet is None:
        return 1, ("every docker subnet new stacks get (" + ", ".join(NEW_STACK_SUBNETS[:3]) + ", … "
                   f"{NEW_STACK_SUBNETS[-1]}) is used by a Pulumi.*.yaml here; remove a stack you no longer "
                   "need, or copy one and set kindmesh:network.subnet to a free private range yourself")
    text = NEW_STACK_TEMPLATE.format(name=name, subnet=subnet)
    try:
        load_plan(strip_namespace(yaml.safe_load(text)["config"]), stack=name)
    except ConfigError as err:  # the template must plan for every valid name
        return 1, f"the new stack's config would not be valid for {name!r}:\n{err}"
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)
    return 0, (f"wrote {path.name} (clusters one, two; docker subnet {subnet}, used by no other stack "
               f"here); edit it, then `make up STACK={name}`. "
               f"Config the Pulumi way: pulumi config set --stack {name} --path 'kindmesh:network.poolSize' 32")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kindmesh.cli.doctor",
        description="Check this host for everything kindmesh needs (what `make doctor` and `make up` run), "
                    "or write a new stack file (`make new-stack`). Exit code 0: nothing blocks `make up`.")
    parser.add_argument("--stack", metavar="NAME", default=os.environ.get("STACK", "dev"),
                        help="the stack to check, read from Pulumi.NAME.yaml in the current directory: its "
                             "config, and the host needs of its kind clusters (default: $STACK or dev)")
    parser.add_argument("--new-stack", metavar="NAME",
                        help="write Pulumi.NAME.yaml: two clusters and a docker subnet no other stack file here "
                             "uses (refuses to overwrite); then `make up STACK=NAME`")
    args = parser.parse_args(argv)
    if args.new_stack is not None:
        rc, message = new_stack(args.new_stack)
        print(message, file=sys.stderr if rc else sys.stdout)
        return rc
    findings = diagnose(args.stack)
    print(f"kindmesh doctor (stack {args.stack})")
    print(render(findings))
    return 1 if any(f.status == "FAIL" for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
