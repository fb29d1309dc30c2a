"""`make doctor` at the process boundary: fake docker/kind/pulumi/kubectl on PATH, a fake /proc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from kindmesh.cli import doctor
from tests.helpers import ROOT, SHIPPED_STACKS, copy_sources

HOST_INFO = {"CgroupVersion": "2", "CgroupDriver": "systemd", "KernelVersion": "6.1.0-28-amd64",
             "SecurityOptions": ["name=apparmor", "name=seccomp,profile=builtin", "name=cgroupns"]}
INFO_CONTAINERD = {"ServerVersion": "29.0.1", "Driver": "overlayfs", "DockerRootDir": "/",
                   "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]], **HOST_INFO}
INFO_CLASSIC = {"ServerVersion": "27.5.1", "Driver": "overlay2", "DockerRootDir": "/",
                "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]], **HOST_INFO}
BRIDGE = {"Name": "bridge", "Labels": {}, "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}}
API = {"containerd": "1.52", "classic": "1.47"}
# /proc/cgroups on a cgroup v2 host: no controller on a v1 hierarchy
CGROUPS_V2 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\nnet_cls\t0\t1\t1\nnet_prio\t0\t1\t1\n"
DENIED = ("permission denied while trying to connect to the Docker daemon socket at "
          "unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.51/info\": "
          "dial unix /var/run/docker.sock: connect: permission denied")


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _docker_script(info: dict, api: str | None, networks: list[dict], bridge_mtu: str | None) -> str:
    """A fake docker CLI (POSIX sh): info, version, network ls/inspect, as Docker 28/29 answer them."""
    names = "\n".join(n["Name"] for n in networks)
    version = f"echo {api}" if api else 'echo "Error: cannot read the server version" >&2; exit 1'
    return (
        'case "$1" in\n'
        f"  info) echo '{json.dumps(info)}' ;;\n"
        f"  version) {version} ;;\n"
        '  network)\n'
        '    if [ "$2" = ls ]; then\n'
        f"      printf '%s\\n' '{names}'\n"
        '    elif [ "$3" = bridge ] && [ "$4" = -f ]; then\n'
        f"      echo '{bridge_mtu or '<no value>'}'\n"
        '    else\n'
        f"      echo '{json.dumps(networks)}'\n"
        '    fi ;;\n'
        '  *) echo "unknown docker call $*" >&2; exit 2 ;;\n'
        'esac\n'
    )


def make_host(base: Path, *, docker: str | None = "containerd", kind: str | None = "v0.30.0",
              pulumi: bool = True, kubectl: bool = True, watches: int = 524288, instances: int = 512,
              mem_mib: int = 64 * 1024, info: dict | None = None, api: str | None = "default",
              networks: list[dict] | None = None, bridge_mtu: str | None = None,
              cgroups: str = CGROUPS_V2, osrelease: str = "6.1.0-28-amd64") -> tuple[Path, Path]:
    """A bin dir of fake tools and a fake /proc; returns (bin, proc). ``info`` changes keys of
    the `docker info` answer (a value None removes the key)."""
    bin_dir, proc = base / "bin", base / "proc"
    bin_dir.mkdir()
    (proc / "sys/fs/inotify").mkdir(parents=True)
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/fs/inotify/max_user_watches").write_text(f"{watches}\n")
    (proc / "sys/fs/inotify/max_user_instances").write_text(f"{instances}\n")
    (proc / "sys/kernel/osrelease").write_text(f"{osrelease}\n")
    (proc / "cgroups").write_text(cgroups)
    (proc / "meminfo").write_text(f"MemTotal: {mem_mib * 2048} kB\nMemAvailable: {mem_mib * 1024} kB\n")
    if docker == "denied":
        _script(bin_dir / "docker", f"echo '{DENIED}' >&2\nexit 1\n")
    elif docker == "down":
        _script(bin_dir / "docker", "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                                    "Is the docker daemon running?' >&2\nexit 1\n")
    elif docker is not None:
        answer = dict(INFO_CONTAINERD if docker == "containerd" else INFO_CLASSIC)
        for key, value in (info or {}).items():
            if value is None:
                answer.pop(key, None)
            else:
                answer[key] = value
        _script(bin_dir / "docker", _docker_script(answer, API[docker] if api == "default" else api,
                                                   [BRIDGE] if networks is None else networks, bridge_mtu))
    if kind is not None:
        _script(bin_dir / "kind", f"echo 'kind {kind} go1.24.6 linux/amd64'\n")
    if pulumi:
        _script(bin_dir / "pulumi", "echo v3.200.0\n")
    if kubectl:
        _script(bin_dir / "kubectl", "echo 'Client Version: v1.34.0'\n")
    for d in (base, bin_dir, proc, proc / "sys", proc / "sys/fs", proc / "sys/fs/inotify", proc / "sys/kernel"):
        d.chmod(0o755)
    return bin_dir, proc


def run_doctor(bin_dir: Path, proc: Path, *args: str, python: str = sys.executable, cwd: Path = ROOT,
               user: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "KINDMESH_PROC_ROOT": str(proc), "LANG": "C.UTF-8", "HOME": str(bin_dir)}
    return subprocess.run([python, "-m", "kindmesh.cli.doctor", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False, user=user)


def rows(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "warn", "FAIL"):
            found[parts[1]] = parts[0]
    return found


def test_healthy_host_passes_and_reports_the_containerd_store(tmp_path):
    bin_dir, proc = make_host(tmp_path)
    res = run_doctor(bin_dir, proc, "--stack", "dev")
    assert res.returncode == 0, res.stdout + res.stderr
    got = rows(res.stdout)
    for name in ("python", "docker", "image", "kind", "pulumi", "kubectl", "inotify", "stack", "memory", "disk"):
        assert got.get(name) == "ok", (name, res.stdout)
    assert "containerd image store" in res.stdout and "0 problem(s)" in res.stdout
    assert "estimate" in res.stdout and "4 nodes" in res.stdout


def test_classic_store_is_reported_too(tmp_path):
    bin_dir, proc = make_host(tmp_path, docker="classic")
    res = run_doctor(bin_dir, proc, "--stack", "dev")
    assert res.returncode == 0 and "classic image store (storage driver overlay2)" in res.stdout


def test_every_missing_prerequisite_is_listed_at_once_with_its_fix(tmp_path):
    bin_dir, proc = make_host(tmp_path, docker=None, kind=None, pulumi=False, kubectl=False,
                              watches=8192, instances=128, mem_mib=1024)
    res = run_doctor(bin_dir, proc, "--stack", "trio")
    assert res.returncode == 1
    assert "Traceback" not in res.stdout + res.stderr
    got = rows(res.stdout)
    for name in ("docker", "kind", "pulumi", "kubectl", "inotify", "memory"):
        assert got.get(name) == "FAIL", (name, res.stdout)
    out = res.stdout
    assert "https://docs.docker.com/engine/install/" in out
    assert "https://kind.sigs.k8s.io" in out and "v0.30.0" in out
    assert "https://www.pulumi.com/docs/iac/download-install/" in out
    assert "https://kubernetes.io/docs/tasks/tools/#kubectl" in out
    assert "sudo sysctl -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512" in out
    assert "/etc/sysctl.d/99-kindmesh.conf" in out
    assert "1024 MiB available" in out and "6 nodes" in out
    assert "6 problem(s) found" in out


def test_docker_socket_permission_denied_gets_the_group_hint(tmp_path):
    bin_dir, proc = make_host(tmp_path, docker="denied")
    res = run_doctor(bin_dir, proc, "--stack", "dev")
    assert res.returncode == 1 and rows(res.stdout)["docker"] == "FAIL"
    assert "usermod -aG docker" in res.stdout and "rootless" in res.stdout


def test_daemon_down_and_old_kind(tmp_path):
    bin_dir, proc = make_host(tmp_path, docker="down", kind="v0.29.0")
    res = run_doctor(bin_dir, proc, "--stack", "dev")
    assert res.returncode == 1
    assert "systemctl start docker" in res.stdout
    assert "v0.29.0 is too old" in res.stdout


def test_a_tool_that_cannot_execute_is_a_finding_not_a_traceback(tmp_path):
    bin_dir, proc = make_host(tmp_path)
    (bin_dir / "kind").write_bytes(b"\x7fELF garbage")
    (bin_dir / "pulumi").chmod(0o644)
    res = run_doctor(bin_dir, proc, "--stack", "dev")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert rows(res.stdout)["kind"] == "FAIL" and rows(res.stdout)["pulumi"] == "FAIL"


def test_a_missing_or_invalid_stack_file_is_named(tmp_path):
    bin_dir, proc = make_host(tmp_path)
    res = run_doctor(bin_dir, proc, "--stack", "nosuch")
    assert res.returncode == 1 and "make new-stack NAME=nosuch" in res.stdout


def test_unreadable_inotify_limits_are_not_a_problem():
    assert doctor.check_inotify(Path("/nonexistent"), 2).status == "ok"


def test_new_stack_writes_a_valid_locked_file_and_never_overwrites(tmp_path):
    rc, msg = doctor.new_stack("lab-1", root=tmp_path)
    assert rc == 0, msg
    data = yaml.safe_load((tmp_path / "Pulumi.lab-1.yaml").read_text())["config"]
    assert data["pulumi:disable-default-providers"] == ["kubernetes", "docker"]
    assert [c["id"] for c in data["kindmesh:clusters"]] == [1, 2]
    plan, finding = doctor.load_stack_plan("lab-1", tmp_path)
    assert plan is not None and finding.status == "ok"
    before = (tmp_path / "Pulumi.lab-1.yaml").read_text()
    rc, msg = doctor.new_stack("lab-1", root=tmp_path)
    assert rc == 1 and "not overwriting" in msg
    assert (tmp_path / "Pulumi.lab-1.yaml").read_text() == before
    assert doctor.new_stack("", root=tmp_path)[0] == 2
    assert doctor.new_stack("../evil", root=tmp_path)[0] == 2
    assert not [p for p in tmp_path.parent.rglob("*evil*") if p.is_file()]


def _distro_python() -> str | None:
    for cand in ("/usr/bin/python3",):
        if os.access(cand, os.X_OK):
            return cand
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (the test runs as a normal user already)")
def test_doctor_as_an_unprivileged_user(tmp_path):
    """The README's user is not root: same checks, run as uid 65534 with the distro Python."""
    python = _distro_python()
    probe = subprocess.run([python or "/nonexistent", "-c", "import sys, yaml; sys.exit(sys.version_info < (3, 11))"],
                           capture_output=True, user=65534, check=False) if python else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no distro python3 >= 3.11 with PyYAML runnable by uid 65534")
    base = Path(tempfile.mkdtemp(prefix="kindmesh-doctor-"))
    try:
        base.chmod(0o755)
        project = base / "project"
        copy_sources(project)
        shutil.copy(ROOT / "Pulumi.dev.yaml", project)
        (base / "host").mkdir()
        bin_dir, proc = make_host(base / "host", docker="denied")
        res = run_doctor(bin_dir, proc, "--stack", "dev", python=python or "", cwd=project, user=65534)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        assert rows(res.stdout)["docker"] == "FAIL" and "usermod -aG docker" in res.stdout
        assert rows(res.stdout)["python"] == "ok" and rows(res.stdout)["kind"] == "ok"
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------- existing-only stacks
KUBECONFIG = (
    "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
    "clusters:\n- name: lab\n  cluster:\n    server: https://192.0.2.1:6443\n"
    "contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n"
    "users:\n- name: lab\n  user:\n    token: t\n"
)


def _existing_only_project(root: Path) -> None:
    data = yaml.safe_load((ROOT / "Pulumi.remote.yaml").read_text())
    for c in data["config"]["kindmesh:clusters"]:
        c["kubeconfig"] = KUBECONFIG
    (root / "Pulumi.remote.yaml").write_text(yaml.safe_dump(data))
    root.chmod(0o755)


def test_existing_only_stack_needs_no_docker_kind_or_host_capacity(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    _existing_only_project(project)
    bin_dir, proc = make_host(tmp_path, docker=None, kind=None, watches=8192, instances=128, mem_mib=16)
    monkeypatch.setenv("PATH", str(bin_dir))
    findings = doctor.diagnose("remote", root=project, proc_root=proc)
    got = {f.name: f for f in findings}
    out = doctor.render(findings)
    assert "0 problem(s)" in out, out
    for name in ("docker", "image store", "kind", "inotify", "memory", "disk"):
        assert got[name].status == "ok" and "not needed: no kind clusters" in got[name].detail, out
    assert got["pulumi"].status == "ok" and got["kubectl"].status == "ok" and got["stack"].status == "ok"
    assert "2 existing clusters" in got["stack"].detail
    # pulumi and kubectl are still needed
    (bin_dir / "kubectl").unlink()
    got = {f.name: f for f in doctor.diagnose("remote", root=project, proc_root=proc)}
    assert got["kubectl"].status == "FAIL"


def test_shipped_remote_stack_is_recognised_even_when_its_kubeconfigs_are_elsewhere(tmp_path):
    bin_dir, proc = make_host(tmp_path, docker=None, kind=None)
    res = run_doctor(bin_dir, proc, "--stack", "remote")  # HOME has no ~/.kube/k3s-*.yaml
    got = rows(res.stdout)
    assert got["stack"] == "FAIL" and "kindmesh:clusters[0].kubeconfig" in res.stdout
    assert got["docker"] == "ok" and got["kind"] == "ok" and "not needed" in res.stdout


def test_capacity_counts_only_kind_nodes():
    from kindmesh.core.planner import load_plan

    raw = yaml.safe_load((ROOT / "Pulumi.remote.yaml").read_text())["config"]
    clusters = raw["kindmesh:clusters"]
    for c in clusters:
        c["kubeconfig"] = KUBECONFIG
    clusters.append({"name": "k", "id": 3, "workers": 2})
    config = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("kindmesh:")}
    config["mesh"] = {"topology": "full", "routable": True}
    config["network"] = {"subnet": "172.30.0.0/16"}
    plan = load_plan(config, stack="mixed")
    nodes, mib, _ = doctor.need_for(plan)
    assert nodes == 3 and mib == doctor.MEM_CONTROL_PLANE_MIB + 2 * doctor.MEM_WORKER_MIB


# ----------------------------------------------------------------------------- new-stack subnets
def _copy_stacks(root: Path) -> None:
    for stack in SHIPPED_STACKS:
        (root / f"Pulumi.{stack}.yaml").write_text((ROOT / f"Pulumi.{stack}.yaml").read_text())


def test_new_stack_gets_a_subnet_no_other_stack_uses(tmp_path):
    import ipaddress

    _copy_stacks(tmp_path)
    used = doctor.used_subnets(tmp_path)
    assert ipaddress.IPv4Network("172.31.0.0/16") in used  # trio's
    names = ["lab", "lab-1", "x", "staging", "a.b", "Z9"]
    for name in names:
        rc, msg = doctor.new_stack(name, root=tmp_path)
        assert rc == 0, msg
        plan, finding = doctor.load_stack_plan(name, tmp_path)
        assert plan is not None, finding.detail
        net = ipaddress.IPv4Network(plan.network.subnet)
        assert net.prefixlen == 16 and net.subnet_of(ipaddress.IPv4Network("172.16.0.0/12"))
        assert str(net) not in ("172.17.0.0/16", "172.18.0.0/16")
        assert not any(net.overlaps(u) for u in used), (name, net)
        used.append(net)  # the next new stack must avoid this one too
    assert len({str(u) for u in used}) == len(used)


def test_new_stack_subnet_is_deterministic_and_spread_by_name(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        _copy_stacks(d)
    for name in ("lab", "qa", "perf"):
        assert doctor.new_stack(name, root=a)[0] == 0
        assert doctor.new_stack(name, root=b)[0] == 0
        assert (a / f"Pulumi.{name}.yaml").read_text() == (b / f"Pulumi.{name}.yaml").read_text()
    firsts = {doctor.pick_subnet(f"s{i}", []) for i in range(200)}
    assert len(firsts) == len(doctor.NEW_STACK_SUBNETS)


def test_new_stack_refuses_when_every_subnet_is_taken(tmp_path):
    for i, subnet in enumerate(doctor.NEW_STACK_SUBNETS):
        (tmp_path / f"Pulumi.s{i}.yaml").write_text(
            yaml.safe_dump({"config": {"kindmesh:network": {"subnet": subnet}}}))
    rc, msg = doctor.new_stack("lab", root=tmp_path)
    assert rc == 1 and "kindmesh:network.subnet" in msg
    assert not (tmp_path / "Pulumi.lab.yaml").exists()


def test_unreadable_stack_files_do_not_break_new_stack(tmp_path):
    (tmp_path / "Pulumi.bad.yaml").write_text("config: [" * 3000)
    (tmp_path / "Pulumi.odd.yaml").write_text(yaml.safe_dump({"config": {"kindmesh:network": {"subnet": 5}}}))
    assert doctor.new_stack("lab", root=tmp_path)[0] == 0


# ----------------------------------------------------------------------------- the kind host (issue 20)
def _doctor(tmp_path, stack="dev", **host):
    tmp_path.mkdir(parents=True, exist_ok=True)
    bin_dir, proc = make_host(tmp_path, **host)
    res = run_doctor(bin_dir, proc, "--stack", stack)
    assert "Traceback" not in res.stderr, res.stderr
    return res, rows(res.stdout)


def test_healthy_kind_host_rows(tmp_path):
    res, got = _doctor(tmp_path)
    for name in ("cgroup", "cgroupns", "kernel", "engine", "network"):
        assert got.get(name) == "ok", (name, res.stdout)
    assert "cgroup v2 (driver systemd)" in res.stdout and "--cgroupns=private" in res.stdout
    assert "6.1.0-28-amd64" in res.stdout and "daemon default: private" in res.stdout


def test_cgroup_v1_fails_with_the_boot_fix(tmp_path):
    res, got = _doctor(tmp_path, info={"CgroupVersion": "1"})
    assert res.returncode == 1 and got["cgroup"] == "FAIL"
    assert "systemd.unified_cgroup_hierarchy=1" in res.stdout and "update-grub" in res.stdout


def test_cgroupns_needs_an_engine_that_kind_can_ask_for_private_namespaces(tmp_path):
    res, got = _doctor(tmp_path, api="1.40", docker="classic")
    assert res.returncode == 1 and got["cgroupns"] == "FAIL" and "1.40 < 1.41" in res.stdout
    assert "--cgroupns=private" in res.stdout and "docs.docker.com/engine/install" in res.stdout


def test_cgroupns_unknown_with_a_host_default_is_a_warning_with_the_daemon_fix(tmp_path):
    res, got = _doctor(tmp_path / "a", api=None, info={"SecurityOptions": ["name=seccomp,profile=builtin"]},
                       docker="classic")
    assert got["cgroupns"] == "warn" and '"default-cgroupns-mode": "private"' in res.stdout


@pytest.mark.parametrize("kernel,cgroups,status,said", [
    ("5.4.0-150-generic", CGROUPS_V2, "FAIL", "needs Linux 5.10"),
    ("5.10.0-9-amd64", "net_cls\t3\t1\t1\nnet_prio\t3\t1\t1\n", "FAIL", "net_cls (hierarchy 3)"),
    ("5.10.0-9-amd64", CGROUPS_V2, "ok", "net_cls/net_prio are off"),
    ("5.14.0", "net_cls\t3\t1\t1\n", "ok", "needs >= 5.10"),
    ("6.12.1", CGROUPS_V2, "ok", "6.12.1"),
])
def test_kernel_for_kube_proxy_replacement_and_socket_lb_on_kind(tmp_path, kernel, cgroups, status, said):
    res, got = _doctor(tmp_path, info={"KernelVersion": kernel}, cgroups=cgroups)
    assert got["kernel"] == status and said in res.stdout, res.stdout
    if status == "FAIL":
        assert res.returncode == 1
        assert ("cgroup_no_v1=net_cls,net_prio" in res.stdout) == ("net_cls (" in said)


def test_kernel_is_read_from_proc_when_docker_does_not_say(tmp_path):
    res, got = _doctor(tmp_path, info={"KernelVersion": None}, osrelease="5.4.0-1")
    assert got["kernel"] == "FAIL" and "5.4.0-1 < 5.10" in res.stdout


@pytest.mark.parametrize("store,api,status", [
    ("containerd", "1.47", "FAIL"), ("containerd", "1.48", "ok"), ("containerd", "1.52", "ok"),
    ("classic", "1.47", "ok"), ("containerd", None, "warn"),
])
def test_engine_api_for_platform_saves_on_the_containerd_store(tmp_path, store, api, status):
    res, got = _doctor(tmp_path, docker=store, api=api)
    assert got["engine"] == status, res.stdout
    if status == "FAIL":
        assert "1.47 < 1.48" in res.stdout and "docker save --platform" in res.stdout
        assert "Docker Engine to 28" in res.stdout and "kindmesh:kind.prePull: false" in res.stdout


def test_disk_uses_the_daemons_data_root(tmp_path):
    res, got = _doctor(tmp_path / "a", info={"DockerRootDir": str(tmp_path)})
    assert got["disk"] == "ok" and f"free on {tmp_path} (Docker's data root)" in res.stdout
    res, got = _doctor(tmp_path / "b", info={"DockerRootDir": "/nonexistent/kindmesh-docker"})
    assert got["disk"] == "warn" and "free space unknown" in res.stdout and "/nonexistent/kindmesh-docker" in res.stdout
    assert "free on" not in res.stdout


def test_disk_is_unknown_when_docker_is_unreachable_never_var_lib_docker(tmp_path):
    for i, docker in enumerate(("down", "denied", None)):
        res, got = _doctor(tmp_path / str(i), docker=docker)
        assert got["disk"] == "warn" and "free space unknown" in res.stdout, res.stdout
        assert "/var/lib/docker" not in res.stdout and "free on" not in res.stdout


def test_a_subnet_another_docker_network_uses_is_named(tmp_path):
    lab = {"Name": "lab-net", "Labels": {}, "IPAM": {"Config": [{"Subnet": "172.30.5.0/24"}]}}
    res, got = _doctor(tmp_path, networks=[BRIDGE, lab])
    assert res.returncode == 1 and got["network"] == "FAIL"
    assert "kindmesh:network.subnet 172.30.0.0/16 clashes with docker network 'lab-net' (172.30.5.0/24)" in res.stdout


def test_a_live_network_with_another_subnet_or_mtu_is_refused_with_the_way_out(tmp_path):
    from kindmesh.core.model import stack_label

    ours = {"Name": "kindmesh-dev", "Labels": {"kindmesh.io/stack": stack_label("kindmesh", "dev")},
            "IPAM": {"Config": [{"Subnet": "172.30.0.0/16"}]}, "Options": {}}
    res, got = _doctor(tmp_path / "a", networks=[BRIDGE, ours])
    assert got["network"] == "ok" and "exists: this stack's" in res.stdout
    moved = dict(ours, IPAM={"Config": [{"Subnet": "172.29.0.0/16"}]})
    res, got = _doctor(tmp_path / "b", networks=[BRIDGE, moved])
    assert got["network"] == "FAIL"
    assert "kindmesh:network.subnet is 172.30.0.0/16" in res.stdout and "has 172.29.0.0/16" in res.stdout
    assert "make destroy STACK=dev" in res.stdout and "make new-stack" in res.stdout
    res, got = _doctor(tmp_path / "c", networks=[BRIDGE, ours], bridge_mtu="1400")
    assert got["network"] == "FAIL" and "default MTU is now 1400" in res.stdout and "MTU 1500" in res.stdout


def _low_inotify(tmp_path):
    proc = tmp_path / "proc"
    (proc / "sys/fs/inotify").mkdir(parents=True)
    (proc / "sys/fs/inotify/max_user_watches").write_text("8192\n")
    (proc / "sys/fs/inotify/max_user_instances").write_text("128\n")
    return proc


@pytest.mark.parametrize("clusters,status", [(0, "warn"), (1, "warn"), (2, "FAIL"), (3, "FAIL"), (16, "FAIL")])
def test_inotify_severity_follows_the_number_of_kind_clusters(tmp_path, clusters, status):
    finding = doctor.check_inotify(_low_inotify(tmp_path), clusters)
    assert finding.status == status
    assert "fs.inotify.max_user_watches is 8192 (< 524288)" in finding.detail
    assert "sudo sysctl -w" in finding.fix


def test_one_kind_cluster_with_low_inotify_warns_and_does_not_block(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.solo.yaml").write_text(yaml.safe_dump({"config": {
        "kindmesh:clusters": [{"name": "solo", "id": 1}], "kindmesh:network": {"subnet": "172.30.0.0/16"}}}))
    bin_dir, proc = make_host(tmp_path, watches=8192, instances=128)
    monkeypatch.setenv("PATH", str(bin_dir))
    got = {f.name: f.status for f in doctor.diagnose("solo", root=project, proc_root=proc)}
    assert got["inotify"] == "warn" and "FAIL" not in got.values(), got
    res = run_doctor(bin_dir, proc, "--stack", "dev")  # two kind clusters: blocks `make up`
    assert rows(res.stdout)["inotify"] == "FAIL" and res.returncode == 1


def test_help_describes_every_option(tmp_path):
    bin_dir, proc = make_host(tmp_path)
    res = run_doctor(bin_dir, proc, "--help")
    assert res.returncode == 0
    text = res.stdout.split("options:", 1)[1]
    options = [line.split()[0] for line in text.splitlines() if line.strip().startswith("-")]
    assert {"-h,", "--stack", "--new-stack"} <= set(options), text
    for opt in ("--stack NAME", "--new-stack NAME"):
        described = text.split(opt, 1)[1].split("\n  -", 1)[0]
        assert len(described.split()) >= 5, (opt, described)


@pytest.mark.parametrize("kind,status,shown", [
    ("v0.31.0", "ok", "kindest/node:v1.35.0"),
    ("v0.33.0", "ok", "kindest/node:v1.37.0"),
    ("v0.35.0", "warn", "newer than kindmesh knows"),
    ("v0.29.0", "FAIL", "too old"),
])
def test_kind_row_names_the_node_image_of_the_installed_release(tmp_path, kind, status, shown):
    bin_dir, _proc = make_host(tmp_path, kind=kind)
    finding = doctor.check_kind(str(bin_dir / "kind"))
    assert finding.status == status and shown in finding.detail


def test_an_unvalidated_cilium_patch_is_a_warning_row_not_a_failure(tmp_path):
    bin_dir, proc = make_host(tmp_path)
    root = tmp_path / "proj"
    root.mkdir()
    data = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    data["config"]["kindmesh:cilium"] = {"version": "1.20.9"}
    (root / "Pulumi.dev.yaml").write_text(yaml.safe_dump(data))
    findings = {f.name: f for f in doctor.diagnose("dev", root=root, proc_root=proc)}
    assert findings["stack"].status == "ok"
    assert findings["versions"].status == "warn" and "1.20.9 has not been validated" in findings["versions"].detail


def test_cgroupns_accepts_an_engine_api_exactly_at_the_floor():
    """1.41 (Docker 20.10) is the first Engine API kind can ask for private cgroup namespaces with."""
    assert doctor.MIN_API_CGROUPNS == (1, 41)
    assert doctor.check_cgroupns(HOST_INFO, (1, 41)).status == "ok"
    assert doctor.check_cgroupns(HOST_INFO, (1, 40)).status == "FAIL"
