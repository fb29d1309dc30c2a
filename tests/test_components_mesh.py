"""Mesh in programs of one's own: distinct names, host resources claimed per program,
nothing registered before the config and the name are checked."""

from __future__ import annotations

import ipaddress
import runpy
import textwrap

import pulumi
import pytest
from pulumi.runtime.settings import ROOT

from kindmesh.core.naming import DEFAULT_SUBNETS, default_subnet
from tests.mocks import Mocks, Recorder

NETWORK = "docker:index/network:Network"
MESH = "kindmesh:index:Mesh"


def run_program(tmp_path, body: str, stack: str = "example") -> tuple[Recorder, BaseException | None]:
    """Run a program under the mocks; the recorder and the error it raised (if any)."""
    path = tmp_path / "__main__.py"
    path.write_text("from kindmesh.components.mesh import Mesh, MeshArgs\n" + textwrap.dedent(body))
    ROOT.set(None)
    mocks = Mocks()
    recorder = Recorder(mocks)
    pulumi.runtime.set_mocks(mocks, project="kindmesh", stack=stack, preview=False, monitor=recorder)

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(path), run_name="__main__")

    try:
        program()
    except Exception as exc:  # noqa: BLE001 - returned to the test
        return recorder, exc
    return recorder, None


def two_clusters(a: str = "x", b: str = "y") -> str:
    return f'{{"clusters": [{{"name": "{a}", "id": 1, "workers": 0}}, {{"name": "{b}", "id": 2, "workers": 0}}]}}'


def test_mesh_names_and_cluster_names_cannot_combine_into_the_same_urn(tmp_path):
    rec, err = run_program(tmp_path, f"""
        Mesh("a", MeshArgs(config={two_clusters("b-x", "y")}))
        Mesh("a-b", MeshArgs(config={two_clusters("x", "z")}))
    """)
    assert err is None, err
    urns = [r.urn for r in rec.registered]
    assert len(urns) == len(set(urns)), sorted(u for u in urns if urns.count(u) > 1)
    names = {r.name for r in rec.registered}
    assert {"a.b-x-cilium", "a-b.x-cilium"} <= names
    assert all(r.name.startswith(("a.", "a-b.")) for r in rec.registered if r.type != MESH)


@pytest.mark.parametrize("bad", ["A", "a_b", "a.b", "-a", "", "x" * 64])
def test_a_mesh_name_that_is_not_a_dns_label_is_refused_before_anything_registers(tmp_path, bad):
    rec, err = run_program(tmp_path, f"Mesh({bad!r}, MeshArgs(config={two_clusters()}))")
    assert isinstance(err, ValueError) and "DNS label" in str(err)
    assert rec.registered == []


def test_an_invalid_config_registers_nothing_not_even_the_mesh(tmp_path):
    rec, err = run_program(tmp_path, 'Mesh("bad", MeshArgs(config={"clusters": [{"name": "A_B"}]}))')
    assert isinstance(err, pulumi.RunError) and "kindmesh:clusters[0].name" in str(err)
    assert rec.registered == []


@pytest.mark.parametrize("config", ["'clusters: []'", "[('clusters', [])]", "None"])
def test_mesh_config_must_be_a_mapping(tmp_path, config):
    rec, err = run_program(tmp_path, f'Mesh("m", MeshArgs(config={config}))')
    assert isinstance(err, TypeError) and "MeshArgs.config" in str(err)
    assert rec.registered == []


def _coinciding_names(stack: str = "example") -> tuple[str, str]:
    seen: dict[str, str] = {}
    for i in range(200):
        name = f"m{i}"
        subnet = default_subnet(f"{stack}-{name}")
        if subnet in seen:
            return seen[subnet], name
        seen[subnet] = name
    raise AssertionError("no two names share a default subnet")


def _subnets(rec: Recorder) -> dict[str, str]:
    return {r.name.split(".")[0]: r.inputs["ipamConfigs"][0]["subnet"] for r in rec.registered if r.type == NETWORK}


def test_two_meshes_whose_default_subnets_coincide_get_distinct_ones(tmp_path):
    first, second = _coinciding_names()
    rec, err = run_program(tmp_path, f"""
        Mesh({first!r}, MeshArgs(config={two_clusters()}))
        Mesh({second!r}, MeshArgs(config={two_clusters()}))
    """)
    assert err is None, err
    subnets = _subnets(rec)
    assert subnets[first] == default_subnet(f"example-{first}")  # the first keeps its default
    assert subnets[second] in DEFAULT_SUBNETS and subnets[second] != subnets[first]
    start = DEFAULT_SUBNETS.index(default_subnet(f"example-{second}"))
    assert subnets[second] == (DEFAULT_SUBNETS[start:] + DEFAULT_SUBNETS[:start])[1]  # the next candidate
    assert not ipaddress.ip_network(subnets[first]).overlaps(ipaddress.ip_network(subnets[second]))


def test_each_program_has_its_own_claims(tmp_path):
    """The same program twice in one process: the second run does not see the first's meshes."""
    body = f'Mesh("solo", MeshArgs(config={two_clusters()}))'
    subnets = []
    for _ in range(2):
        rec, err = run_program(tmp_path, body)
        assert err is None, err
        subnets.append(_subnets(rec))
    assert subnets[0] == subnets[1] == {"solo": default_subnet("example-solo")}


def test_an_explicit_identical_stack_is_a_clean_error_naming_both_meshes(tmp_path):
    rec, err = run_program(tmp_path, f"""
        Mesh("one", MeshArgs(config={two_clusters()}, stack="lab"))
        Mesh("two", MeshArgs(config={two_clusters()}, stack="lab"))
    """)
    assert isinstance(err, pulumi.RunError), err
    text = str(err)
    assert "'two'" in text and "'one'" in text
    for what in ("docker network kindmesh-lab", "kind cluster km-lab-x", "kubeconfig file", "MeshArgs(stack="):
        assert what in text, (what, text)
    assert not any(r.name.startswith("two") for r in rec.registered)


def test_an_explicit_overlapping_subnet_is_a_clean_error(tmp_path):
    body = """
        Mesh("one", MeshArgs(config={"clusters": [{"name": "x", "id": 1}], "network": {"subnet": "172.30.0.0/16"}}))
        Mesh("two", MeshArgs(config={"clusters": [{"name": "x", "id": 1}], "network": {"subnet": "172.30.5.0/24"}}))
    """
    rec, err = run_program(tmp_path, body)
    assert isinstance(err, pulumi.RunError), err
    assert "docker subnet 172.30.5.0/24 (overlaps 172.30.0.0/16)" in str(err) and "network.subnet" in str(err)
    assert not any(r.name.startswith("two") for r in rec.registered)


def test_the_same_mesh_name_twice_is_refused(tmp_path):
    rec, err = run_program(tmp_path, f"""
        Mesh("twin", MeshArgs(config={two_clusters()}, stack="s1"))
        Mesh("twin", MeshArgs(config={two_clusters()}, stack="s2"))
    """)
    assert isinstance(err, pulumi.RunError) and "component name twin" in str(err)


def test_the_stack_program_keeps_its_unprefixed_names():
    from tests.helpers import stack_raw
    from tests.mocks import evaluate

    rec = evaluate(stack_raw("dev"), "dev")
    names = {r.name for r in rec.resources}
    assert "network" in names and not any("." in n for n in names if n.endswith("-cilium"))


def test_peers_for_an_unknown_cluster_lists_the_members(tmp_path):
    rec, err = run_program(tmp_path, """
        from kindmesh.components.mesh_connection import MeshConnection, MeshConnectionArgs, MeshMember
        mesh = MeshConnection("m", MeshConnectionArgs(members=[MeshMember("a", ["10.0.0.1"]),
                                                               MeshMember("b", ["10.0.0.2"])]))
        assert mesh.peers_for("a") == [{"name": "b", "port": 2379, "ips": ["10.0.0.2"]}]
        mesh.peers_for("c")
    """)
    assert isinstance(err, ValueError) and "'c' is not a member; members: a, b" in str(err)
