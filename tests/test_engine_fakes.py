"""The engine tier's fakes behave as the real tools do (fast checks; no Go tools needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration import fake_docker, lifecycle

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    root = Path(os.path.realpath("/tmp")) / f"kmfd-{os.getpid()}-{time.monotonic_ns()}"
    root.mkdir()
    sock = root / "d.sock"
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.fake_docker", "daemon", "--state", str(root),
                             "--socket", str(sock)], cwd=REPO)
    deadline = time.monotonic() + 20
    while not (root / "daemon.ready").exists():
        assert time.monotonic() < deadline, "the fake daemon did not start"
        time.sleep(0.05)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    yield root
    proc.terminate()
    proc.wait(10)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def test_network_inspect_reports_the_ipv4_ipv6_options_unasked(daemon: Path) -> None:
    fake_docker.api_json("POST", "/networks/create", {
        "Name": "km", "Driver": "bridge", "Options": {"com.docker.network.bridge.enable_ip_masquerade": "true"},
        "IPAM": {"Config": [{"Subnet": "172.30.0.0/24"}]}})
    options = fake_docker.api_json("GET", "/networks/km")["Options"]
    assert options == {"com.docker.network.bridge.enable_ip_masquerade": "true",
                       "com.docker.network.enable_ipv4": "true", "com.docker.network.enable_ipv6": "false"}


def test_asked_options_are_kept_as_given(daemon: Path) -> None:
    asked = {"com.docker.network.enable_ipv4": "true", "com.docker.network.enable_ipv6": "false",
             "com.docker.network.driver.mtu": "1400"}
    fake_docker.api_json("POST", "/networks/create", {"Name": "km", "Options": asked,
                                                      "IPAM": {"Config": [{"Subnet": "172.30.0.0/24"}]}})
    assert fake_docker.api_json("GET", "/networks/km")["Options"] == asked


def test_overlapping_subnet_and_active_endpoints_are_refused(daemon: Path) -> None:
    fake_docker.api_json("POST", "/networks/create", {"Name": "a", "IPAM": {"Config": [{"Subnet": "172.30.0.0/24"}]}})
    with pytest.raises(fake_docker.ApiError, match="Pool overlaps"):
        fake_docker.api_json("POST", "/networks/create", {"Name": "b", "IPAM": {"Config": [{"Subnet": "172.30.0.0/16"}]}})
    with pytest.raises(fake_docker.ApiError) as exc:
        fake_docker.api_json("POST", "/networks/create", {"Name": "a"})
    assert exc.value.status == 409
    fake_docker.api_json("POST", "/containers/create?name=n1", {"NetworkingConfig": {"EndpointsConfig": {"a": {}}}})
    with pytest.raises(fake_docker.ApiError, match="active endpoints"):
        fake_docker.api_json("DELETE", "/networks/a")
    fake_docker.api_json("DELETE", "/containers/n1")
    fake_docker.api_json("DELETE", "/networks/a")
    assert [n["Name"] for n in fake_docker.api_json("GET", "/networks")] == ["bridge", "host", "none"]


def test_old_api_versions_are_refused_like_docker_29(daemon: Path) -> None:
    status, body = fake_docker.api("GET", "/version")
    assert status == 200 and json.loads(body)["MinAPIVersion"] == "1.44"  # the CLI's own prefix (1.52)
    conn = fake_docker.UnixConnection(str(daemon / "d.sock"))
    conn.request("GET", "/v1.41/version")
    resp = conn.getresponse()
    assert resp.status == 400 and b"too old" in resp.read()


def test_cli_templates_as_kindmesh_uses_them(daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fake_docker.cli(["info", "--format", "{{json .DriverStatus}}"]) == 0
    assert json.loads(capsys.readouterr().out) == [["driver-type", "io.containerd.snapshotter.v1"]]
    assert fake_docker.cli(["network", "inspect", "bridge", "-f",
                            '{{ index .Options "com.docker.network.driver.mtu" }}']) == 0
    assert capsys.readouterr().out.strip() == "1500"
    assert fake_docker.cli(["version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"]) == 0
    assert capsys.readouterr().out.strip() == "linux/amd64"


def test_engine_plan_from_an_event_log(tmp_path: Path) -> None:
    urn = "urn:pulumi:dev::kindmesh::kindmesh:index:KindCluster$command:local:Command::us-kind-cluster"
    events = [
        {"sequence": 1, "timestamp": 10, "resourcePreEvent": {"metadata": {"op": "replace", "urn": urn,
                                                                            "type": "command:local:Command",
                                                                            "diffs": ["triggers"]}}},
        {"sequence": 2, "timestamp": 12, "resOutputsEvent": {"metadata": {"op": "replace", "urn": urn,
                                                                           "type": "command:local:Command"}}},
        {"sequence": 3, "timestamp": 13, "summaryEvent": {"resourceChanges": {"replace": 1, "same": 9}}},
    ]
    log = tmp_path / "e.jsonl"
    log.write_text("\n".join(json.dumps(e) for e in events))
    plan = lifecycle.read_plan(log)
    assert plan.by_op() == {"replace": ["command:local:Command::us-kind-cluster"]}
    assert plan.summary == {"replace": 1, "same": 9}
    assert plan.order == [{"urn": urn, "op": "replace", "start": 10.0, "end": 12.0}]
    assert lifecycle.expect_nothing(plan, None)  # type: ignore[arg-type]


def test_owner_of_a_resource_is_by_name_prefix() -> None:
    clusters = ["eu", "us", "us-east"]
    assert lifecycle.owner("urn:pulumi:s::p::t::us-east-cilium", clusters) == "us-east"
    assert lifecycle.owner("urn:pulumi:s::p::t::us-cilium", clusters) == "us"
    assert lifecycle.owner("urn:pulumi:s::p::t::mesh-ca", clusters) is None
    assert lifecycle.owner("urn:pulumi:s::p::t::europe", clusters) is None


def _plan(ops: dict[str, tuple[str, str]]) -> lifecycle.Plan:
    plan = lifecycle.Plan()
    for name, (op, typ) in ops.items():
        urn = f"urn:pulumi:dev::kindmesh::{typ}::{name}"
        plan.ops[urn], plan.types[urn], plan.diffs[urn] = op, typ, []
    return plan


def test_adding_a_cluster_may_create_its_own_and_update_peers_only() -> None:
    sc = lifecycle.Scenario("dev", "dev", {"config": {"kindmesh:clusters": [{"name": "us"}, {"name": "zz"}]}})
    good = _plan({"zz-kind-cluster": ("create", "command:local:Command"),
                  "us-cilium": ("update", "kubernetes:helm.sh/v3:Release"),
                  "us-cilium-rollout": ("update", "command:local:Command"),
                  "mesh-ca": ("same", "kindmesh:index:MeshCA")})
    assert lifecycle.expect_cluster_added("zz")(good, sc) == []
    replaced = _plan({"zz-kind-cluster": ("create", "command:local:Command"),
                      "us-cilium-rollout": ("replace", "command:local:Command")})
    assert any("replace" in p for p in lifecycle.expect_cluster_added("zz")(replaced, sc))
    foreign = _plan({"us-pool": ("create", "kubernetes:metallb.io/v1beta1:IPAddressPool")})
    assert lifecycle.expect_cluster_added("zz")(foreign, sc)


def test_removing_a_cluster_may_delete_its_own_only() -> None:
    sc = lifecycle.Scenario("dev", "dev", {"config": {"kindmesh:clusters": [{"name": "us"}]}})
    ok = _plan({"zz-kind-cluster": ("delete", "command:local:Command"),
                "us-cilium": ("update", "kubernetes:helm.sh/v3:Release")})
    assert lifecycle.expect_cluster_removed("zz")(ok, sc) == []
    bad = _plan({"zz-kind-cluster": ("delete", "command:local:Command"), "us-kind": ("delete", "pulumi-python:dynamic:Resource")})
    assert lifecycle.expect_cluster_removed("zz")(bad, sc)


# ---------------------------------------------------------------- what moby keeps of a network's IPAM


def test_network_keeps_and_reports_ip_range_and_auxiliary_addresses(daemon: Path) -> None:
    # moby (api/types/network.IPAMConfig) stores IPRange and AuxiliaryAddresses as asked and reports
    # them on inspect: pulumi-docker's refresh reads them back into ipamConfigs.
    fake_docker.api_json("POST", "/networks/create", {"Name": "km", "IPAM": {"Config": [
        {"Subnet": "172.30.0.0/24", "IPRange": "172.30.0.0/25", "Gateway": "172.30.0.1",
         "AuxiliaryAddresses": {"host": "172.30.0.5"}}]}})
    cfg = fake_docker.api_json("GET", "/networks/km")["IPAM"]["Config"]
    assert cfg == [{"Subnet": "172.30.0.0/24", "IPRange": "172.30.0.0/25", "Gateway": "172.30.0.1",
                    "AuxiliaryAddresses": {"host": "172.30.0.5"}}]


def test_network_without_a_range_reports_no_empty_ipam_fields(daemon: Path) -> None:
    fake_docker.api_json("POST", "/networks/create", {"Name": "km", "IPAM": {"Config": [{"Subnet": "172.30.0.0/24"}]}})
    assert fake_docker.api_json("GET", "/networks/km")["IPAM"]["Config"] == [
        {"Subnet": "172.30.0.0/24", "Gateway": "172.30.0.1"}]


def test_container_addresses_come_from_the_ip_range_skipping_gateway_and_aux(daemon: Path) -> None:
    fake_docker.api_json("POST", "/networks/create", {"Name": "km", "IPAM": {"Config": [
        {"Subnet": "172.30.0.0/24", "IPRange": "172.30.0.128/30", "Gateway": "172.30.0.129",
         "AuxiliaryAddresses": {"x": "172.30.0.130"}}]}})
    ips = []
    for i in range(2):
        cid = fake_docker.api_json("POST", f"/containers/create?name=n{i}", {
            "Image": "kindest/node:v1.34.0", "NetworkingConfig": {"EndpointsConfig": {"km": {}}}})["Id"]
        ips.append(fake_docker.api_json("GET", f"/containers/{cid}/json")["NetworkSettings"]["Networks"]["km"]["IPAddress"])
    assert ips == ["172.30.0.128", "172.30.0.131"]  # the range's own first address too; .129/.130 reserved
    with pytest.raises(fake_docker.ApiError, match="no available IPv4 addresses"):
        fake_docker.api_json("POST", "/containers/create?name=n2", {
            "Image": "x", "NetworkingConfig": {"EndpointsConfig": {"km": {}}}})


def test_an_ip_range_outside_the_subnet_is_refused(daemon: Path) -> None:
    with pytest.raises(fake_docker.ApiError, match="not contained"):
        fake_docker.api_json("POST", "/networks/create", {"Name": "km", "IPAM": {"Config": [
            {"Subnet": "172.30.0.0/24", "IPRange": "172.31.0.0/25"}]}})


# ---------------------------------------------------------------- the simulated cluster's own parts


def test_a_world_controller_that_cannot_start_fails_the_cluster_at_once_with_its_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration import simcluster
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "etcd").write_text("#!/bin/sh\nexec sleep 30\n")
    (bin_dir / "etcd").chmod(0o755)
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho \"/usr/bin/python3: No module named 'tests'\" >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("KINDMESH_WORLD", str(tmp_path / "world"))
    monkeypatch.setenv("KINDMESH_TOOLS_BIN", str(bin_dir))
    monkeypatch.setattr(simcluster.sys, "executable", str(broken))
    state = simcluster.ClusterState(name="c1", network="", pod_subnet="10.1.0.0/16", service_subnet="10.2.0.0/16",
                                    image="kindest/node:v1.34.0", api_port=simcluster.free_port(),
                                    etcd_port=simcluster.free_port(), egress_port=0,
                                    nodes=[simcluster.NodeSpec("c1-control-plane", "control-plane", "127.0.0.1")])
    state.dir.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="world of cluster c1 exited") as exc:
            simcluster.start(state, timeout=60)
    finally:
        simcluster.stop("c1")
    assert "No module named 'tests'" in str(exc.value)
    assert time.monotonic() - t0 < 15, "a dead world controller must fail the create at once, not at the deadline"


def test_kwok_renews_node_leases_within_the_controller_managers_grace_period() -> None:
    # kube-controller-manager's --node-monitor-grace-period is 40 s (1.34 default); without leases
    # (kubelet heartbeats) the simulated nodes go NotReady and every workload's status follows.
    source = (REPO / "tests" / "integration" / "simcluster.py").read_text()
    argv = source[source.index('_start(state, "kwok"'):]
    argv = argv[:argv.index("state.save()")]
    assert '"--node-lease-duration-seconds", "40"' in argv


def test_sweep_ends_every_process_of_the_run_even_detached_ones(tmp_path: Path) -> None:
    root = tmp_path / "world"
    env = {**os.environ, "KINDMESH_WORLD": str(root)}
    ours = [subprocess.Popen(["sleep", "300"], env=env, start_new_session=True),
            # one that ignores TERM (as a provider stuck in a call may): KILL after the grace
            subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 300 & wait"], env=env, start_new_session=True)]
    other = subprocess.Popen(["sleep", "300"], env={**os.environ, "KINDMESH_WORLD": str(root) + "-other"})
    time.sleep(0.2)  # let the shell set its trap and start its child
    children = subprocess.run(["pgrep", "-P", str(ours[1].pid)], capture_output=True, text=True).stdout.split()
    assert children, "the shell's own child (sleep) should be running"
    try:
        t0 = time.monotonic()
        lifecycle.sweep(root, grace=1.0)
        for p in ours:
            p.wait(5)
        assert time.monotonic() - t0 < 5
        assert other.poll() is None, "a process of another run must be left alone"
        for pid in children:  # the shell's child carries the environment too: ended as well (KILLed:
            # it inherited the ignored TERM; the kernel may take a moment under load)
            lifecycle.poll(lambda pid=pid: not lifecycle._running(int(pid)), 5, f"the shell's child {pid} ending")
    finally:
        other.kill()
        other.wait()
        for p in ours:
            if p.poll() is None:
                p.kill()


def test_a_stage_may_update_its_own_release_and_gates_and_the_host_prepull_only() -> None:
    sc = lifecycle.Scenario("ci", "ci", {"config": {"kindmesh:clusters": [{"name": "alpha"}, {"name": "beta"}]}})
    good = _plan({"alpha-cilium": ("update", "kubernetes:helm.sh/v3:Release"),
                  "alpha-cilium-rollout": ("update", "command:local:Command"),
                  "host-images-pull": ("update", "command:local:Command")})
    assert lifecycle.expect_stage("alpha")(good, sc) == []
    peer = _plan({"alpha-cilium": ("update", "kubernetes:helm.sh/v3:Release"),
                  "beta-cilium": ("update", "kubernetes:helm.sh/v3:Release")})
    assert any("beta-cilium" in p for p in lifecycle.expect_stage("alpha")(peer, sc))
    nothing = _plan({"alpha-cilium-rollout": ("update", "command:local:Command")})
    assert any("not updated" in p for p in lifecycle.expect_stage("alpha")(nothing, sc))


def test_a_refresh_is_clean_only_when_its_summary_has_nothing_but_same() -> None:
    plan = _plan({"us-pool": ("refresh", "kubernetes:metallb.io/v1beta1:IPAddressPool")})
    plan.summary = {"same": 15}
    assert lifecycle.expect_refresh_clean(plan, None) == []  # type: ignore[arg-type]
    plan.summary = {"same": 15, "update": 4}
    assert lifecycle.expect_refresh_clean(plan, None) == ["refresh found 4 resource(s) to update"]  # type: ignore[arg-type]


def test_a_reverted_fix_passes_only_when_the_engine_shows_its_replacement() -> None:
    check = lifecycle.expect_replaced("docker:index/network:Network")
    caught = _plan({"network": ("replace", "docker:index/network:Network")})
    assert check(caught, None) == []  # type: ignore[arg-type]
    missed = _plan({"network": ("same", "docker:index/network:Network")})
    assert check(missed, None)  # type: ignore[arg-type]


def test_world_ports_are_never_handed_out_twice_and_stay_out_of_the_kernels_ephemeral_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bind(0)-then-close let two clusters (or a cluster and an outgoing connection) get the same
    port; a world's ports come from one counter under a lock, below the ephemeral range."""
    import socket

    from tests.integration import simcluster
    monkeypatch.setenv("KINDMESH_WORLD", str(tmp_path / "world"))
    low = simcluster._ephemeral_low()
    first = simcluster.free_port()
    held = int((tmp_path / "world" / "ports.next").read_text())  # the counter's next port
    with socket.socket() as busy:  # a port someone else holds is skipped
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT left there is no holder
        busy.bind(("127.0.0.1", held))
        busy.listen()
        ports = [first] + [simcluster.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert held not in ports
    assert all(1024 <= p < low for p in ports)


def test_a_timed_world_makes_pods_ready_after_the_models_delays_and_still_deletes_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KINDMESH_WORLD_TIME_SCALE: kwok's pod stages hold a pod not Ready for its modelled delay
    (Cilium's longer than any other pod's), complete a Job's pod, and still delete pods."""
    tools = lifecycle.find_tools()
    if tools is None:
        pytest.skip("the engine tier's tools are not built (make tools)")
    from kubernetes import client, config

    from tests.integration import durations, simcluster
    monkeypatch.setenv("KINDMESH_WORLD", str(tmp_path / "world"))
    monkeypatch.setenv("KINDMESH_TOOLS_BIN", str(tools.bin))
    monkeypatch.setenv(durations.SCALE_ENV, "0.02")  # cilium 2.4 s, others 0.4 s
    state = simcluster.ClusterState(name="t1", network="", pod_subnet="10.1.0.0/16", service_subnet="10.2.0.0/16",
                                    image="kindest/node:v1.34.0", api_port=simcluster.free_port(),
                                    etcd_port=simcluster.free_port(), egress_port=simcluster.free_port(),
                                    nodes=[simcluster.NodeSpec("t1-control-plane", "control-plane", "127.0.0.1")])
    state.dir.mkdir(parents=True)
    try:
        simcluster.start(state, timeout=90)
        api = client.CoreV1Api(config.new_client_from_config(str(state.dir / "admin.kubeconfig")))
        def pod(name: str, labels: dict[str, str]) -> None:
            api.create_namespaced_pod("default", {"metadata": {"name": name, "labels": labels}, "spec": {
                "nodeName": "t1-control-plane", "containers": [{"name": "c", "image": "x"}]}})
        t0 = time.monotonic()
        pod("agent", {"k8s-app": "cilium"})
        pod("web", {"app": "web"})
        ready: dict[str, float] = {}
        while len(ready) < 2 and time.monotonic() - t0 < 30:
            for p in api.list_namespaced_pod("default").items:
                conds = {c.type: c.status for c in p.status.conditions or []}
                if conds.get("Ready") == "True" and p.metadata.name not in ready:
                    ready[p.metadata.name] = time.monotonic() - t0
            time.sleep(0.1)
        assert set(ready) == {"agent", "web"}, ready
        assert ready["web"] >= 0.3
        assert ready["agent"] >= 2.2 and ready["agent"] > ready["web"] + 1
        api.delete_namespaced_pod("agent", "default")
        t1 = time.monotonic()
        while any(p.metadata.name == "agent" for p in api.list_namespaced_pod("default").items):
            assert time.monotonic() - t1 < 20, "kwok never deleted the pod"
            time.sleep(0.1)
    finally:
        simcluster.stop("t1")
        lifecycle.sweep(tmp_path / "world", grace=2.0)  # anything of this world stop missed


def test_the_pause_lb_assignment_knob_stops_the_worlds_metallb_assigning_until_removed(tmp_path: Path) -> None:
    from tests.integration import world

    w = object.__new__(world.World)  # no cluster: what the loop would ask the API server is recorded
    w.dir, w.metallb_ready = tmp_path, True
    asked: list[str] = []

    def api() -> object:
        asked.append("api")
        raise ConnectionRefusedError("no API server in this test")
    w.api = api  # type: ignore[method-assign]
    (tmp_path / world.PAUSE_LB).write_text("a scenario's fault\n")
    w.assign_load_balancers()
    assert asked == []  # paused: not even the Services are read
    (tmp_path / world.PAUSE_LB).unlink()
    with pytest.raises(ConnectionRefusedError):
        w.assign_load_balancers()
    assert asked == ["api"]


def test_diagnose_table_is_parsed_by_its_header_columns_with_fix_lines_attached() -> None:
    from kindmesh.cli import diagnose
    from tests.integration import diagnose_tier

    rows = [diagnose.Row("all", "host", "ok", "make doctor: 16/16 checks ok"),
            diagnose.Row("alpha", "kubernetes API", "FAIL", "/x/kubeconfig does not exist", "make kubeconfig STACK=d"),
            diagnose.Row("alpha", "nodes, cilium", "skip", "not checked: a layer above is broken"),
            diagnose.Row("beta", "cilium", "warn", "cilium-dbg status not read: x", "look  at  it")]
    parsed = diagnose_tier.parse_table("kindmesh diagnose (stack d)\n" + diagnose.render(rows, "d") + "\neverything read")
    assert [(r.cluster, r.layer, r.state, r.evidence, r.fix) for r in parsed] == [
        (r.cluster, r.layer, r.state, r.evidence, r.fix if r.state != "ok" else "") for r in rows]


def test_the_fake_docker_engine_keeps_its_state_across_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like dockerd: networks, containers and their files survive a stop and a start on the same state."""
    root = Path(os.path.realpath("/tmp")) / f"kmfr-{os.getpid()}-{time.monotonic_ns()}"
    root.mkdir()
    sock = root / "d.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")

    def start() -> subprocess.Popen[bytes]:
        (root / "daemon.ready").unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "tests.integration.fake_docker", "daemon", "--state", str(root),
                                 "--socket", str(sock)], cwd=REPO)
        lifecycle.poll(lambda: (root / "daemon.ready").exists(), 20, "the fake daemon")
        return proc
    proc = start()
    try:
        fake_docker.api_json("POST", "/networks/create", {"Name": "km", "IPAM": {"Config": [{"Subnet": "172.30.0.0/24"}]}})
        made = fake_docker.api_json("POST", "/containers/create?name=n1", {
            "Image": "x", "Labels": {"a": "b"}, "NetworkingConfig": {"EndpointsConfig": {"km": {}}}})
        fake_docker.api("PUT", f"/kindmesh-fake/containers/{made['Id']}/file?path=/etc/x", raw=b"hello")
        before = fake_docker.api_json("GET", "/networks/km")
        proc.terminate()
        proc.wait(10)
        with pytest.raises(SystemExit, match="Is the docker daemon running"):
            fake_docker.api_json("GET", "/_ping")
        proc = start()
        assert fake_docker.api_json("GET", "/networks/km") == before
        assert [n["Name"] for n in fake_docker.api_json("GET", "/networks")].count("bridge") == 1
        assert fake_docker.api_json("GET", "/containers/n1/json")["Id"] == made["Id"]
        status, body = fake_docker.api("GET", f"/kindmesh-fake/containers/{made['Id']}/file?path=/etc/x")
        assert (status, body) == (200, b"hello")
    finally:
        proc.terminate()
        proc.wait(10)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_the_world_holds_ciliums_agents_not_ready_and_lets_only_its_own_hold_go() -> None:
    from tests.integration import world
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"},
                                       {"type": "PodScheduled", "status": "True"}]}}
    patch = world.held_ready_patch(ready, hold=True)
    assert patch is not None
    conds = {c["type"]: c for c in patch["status"]["conditions"]}
    assert set(conds) == {"Ready", "ContainersReady"}  # PodScheduled is left alone
    assert all(c["status"] == "False" and c["reason"] == world.HELD_REASON for c in conds.values())
    held = {"status": {"conditions": patch["status"]["conditions"]}}
    assert world.held_ready_patch(held, hold=True) is None  # held already: no patch on every pass
    released = world.held_ready_patch(held, hold=False)
    assert released is not None and all(c["status"] == "True" for c in released["status"]["conditions"])
    # a pod that is unready for its own reasons is not made ready by the release
    unready = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]}}
    assert world.held_ready_patch(unready, hold=False) is None
    assert world.held_ready_patch(ready, hold=False) is None
