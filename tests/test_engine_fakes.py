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
