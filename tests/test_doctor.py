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
from tests.helpers import ROOT, copy_sources

INFO_CONTAINERD = {"ServerVersion": "29.0.1", "Driver": "overlayfs", "DockerRootDir": "/",
                   "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}
INFO_CLASSIC = {"ServerVersion": "27.5.1", "Driver": "overlay2", "DockerRootDir": "/",
                "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]}
DENIED = ("permission denied while trying to connect to the Docker daemon socket at "
          "unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.51/info\": "
          "dial unix /var/run/docker.sock: connect: permission denied")


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def make_host(base: Path, *, docker: str | None = "containerd", kind: str | None = "v0.30.0",
              pulumi: bool = True, kubectl: bool = True, watches: int = 524288, instances: int = 512,
              mem_mib: int = 64 * 1024) -> tuple[Path, Path]:
    """A bin dir of fake tools and a fake /proc; returns (bin, proc)."""
    bin_dir, proc = base / "bin", base / "proc"
    bin_dir.mkdir()
    (proc / "sys/fs/inotify").mkdir(parents=True)
    (proc / "sys/fs/inotify/max_user_watches").write_text(f"{watches}\n")
    (proc / "sys/fs/inotify/max_user_instances").write_text(f"{instances}\n")
    (proc / "meminfo").write_text(f"MemTotal: {mem_mib * 2048} kB\nMemAvailable: {mem_mib * 1024} kB\n")
    if docker == "denied":
        _script(bin_dir / "docker", f"echo '{DENIED}' >&2\nexit 1\n")
    elif docker == "down":
        _script(bin_dir / "docker", "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                                    "Is the docker daemon running?' >&2\nexit 1\n")
    elif docker is not None:
        info = INFO_CONTAINERD if docker == "containerd" else INFO_CLASSIC
        _script(bin_dir / "docker", f"echo '{json.dumps(info)}'\n")
    if kind is not None:
        _script(bin_dir / "kind", f"echo 'kind {kind} go1.24.6 linux/amd64'\n")
    if pulumi:
        _script(bin_dir / "pulumi", "echo v3.200.0\n")
    if kubectl:
        _script(bin_dir / "kubectl", "echo 'Client Version: v1.34.0'\n")
    for d in (base, bin_dir, proc, proc / "sys", proc / "sys/fs", proc / "sys/fs/inotify"):
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


def test_one_cluster_only_warns_about_inotify():
    assert doctor.check_inotify(Path("/nonexistent"), 1).status == "ok"


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
    for path in ROOT.glob("Pulumi.*.yaml"):
        (root / path.name).write_text(path.read_text())


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
