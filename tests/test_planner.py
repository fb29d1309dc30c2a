"""Planner: defaults, locality, topologies and the stack files."""

from __future__ import annotations

import ipaddress

import pytest

from kindmesh.core.config import ConfigError
from kindmesh.core.planner import kind_name_for, load_plan, plan, pool_for
from tests.helpers import STACKS, stack_raw


def two(**over):
    raw = {"clusters": [{"name": "us", "id": 1}, {"name": "eu", "id": 2}], "network": {"subnet": "172.30.0.0/16"}}
    raw.update(over)
    return raw


def test_dev_stack_plans_two_meshed_clusters():
    p = load_plan(stack_raw("dev"), stack="dev")
    assert [c.name for c in p.clusters] == ["us", "eu"]
    us, eu = p.clusters
    assert (us.id, eu.id) == (1, 2)
    assert us.peers == ("eu",) and eu.peers == ("us",)
    assert us.kind_name == "km-dev-us" and us.context == "kind-km-dev-us"
    assert us.control_plane == "km-dev-us-control-plane"
    assert us.node_names == ("km-dev-us-control-plane", "km-dev-us-worker")
    assert p.network.subnet == "172.30.0.0/16"
    assert p.network.name == "kindmesh-dev"
    assert (p.network.node_range, p.network.pool_region) == ("172.30.0.0/17", "172.30.128.0/17")
    assert us.mesh_endpoint == f"{us.mesh_ip}:2379"


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_plans(stack):
    p = load_plan(stack_raw(stack), stack=stack)
    assert len(p.clusters) >= 2


def test_stack_files_use_distinct_subnets_so_they_coexist():
    subnets = [ipaddress.ip_network(load_plan(stack_raw(s), stack=s).network.subnet) for s in STACKS]
    for i, a in enumerate(subnets):
        for b in subnets[i + 1 :]:
            assert not a.overlaps(b), (a, b)


def test_pool_layout_top_down_by_id_excludes_broadcast():
    first, last = pool_for("172.30.0.0/24", 16, 1)
    assert str(last) == "172.30.0.254" and str(first) == "172.30.0.239"
    first2, last2 = pool_for("172.30.0.0/24", 16, 2)
    assert int(last2) == int(first) - 1


def test_mesh_ip_and_hubble_ip_are_the_first_pool_addresses():
    p = load_plan(two(), stack="dev")
    for c in p.clusters:
        assert c.mesh_ip == c.pool_first
        assert int(ipaddress.ip_address(c.hubble_ui_ip)) == int(ipaddress.ip_address(c.pool_first)) + 1


def test_hubble_ui_off_means_no_ui_ip():
    p = load_plan(two(cilium={"hubbleUi": False}), stack="dev")
    assert all(c.hubble_ui_ip is None for c in p.clusters)


def test_hub_topology_spokes_do_not_peer():
    raw = two(mesh={"topology": "hub", "hub": "hq"})
    raw["clusters"] = [{"name": "hq", "id": 1}, {"name": "a", "id": 2}, {"name": "b", "id": 3}]
    p = load_plan(raw, stack="x")
    assert p.cluster("hq").peers == ("a", "b")
    assert p.cluster("a").peers == ("hq",)
    assert p.cluster("b").peers == ("hq",)
    assert [str(link) for link in p.links] == ["hq<->a", "hq<->b"]


def test_none_topology_has_no_peers():
    p = load_plan(two(mesh={"topology": "none"}), stack="x")
    assert all(c.peers == () for c in p.clusters) and p.links == ()


def test_peer_entries_are_cilium_clustermesh_config():
    p = load_plan(two(), stack="dev")
    eu = p.cluster("eu")
    assert p.peer_entries("us") == [{"name": "eu", "port": 2379, "ips": [eu.mesh_ip]}]


def test_adding_a_cluster_keeps_existing_decisions():
    before = load_plan(two(), stack="dev")
    raw = two()
    raw["clusters"] = raw["clusters"] + [{"name": "ap", "id": 3}]
    after = load_plan(raw, stack="dev")
    assert after.network == before.network
    for old in before.clusters:
        new = after.cluster(old.name)
        assert (new.kind_name, new.id, new.pod_subnet, new.service_subnet, new.pool, new.mesh_ip) == (
            old.kind_name, old.id, old.pod_subnet, old.service_subnet, old.pool, old.mesh_ip)
        assert set(new.peers) == set(old.peers) | {"ap"}


def test_kind_names_differ_between_stacks_and_fit_hostnames():
    assert kind_name_for("dev", "us") != kind_name_for("prod", "us")
    long = kind_name_for("a-very-long-stack-name-for-a-team-environment", "c" * 32)
    assert len(long) + len("-control-plane") <= 63
    assert long != kind_name_for("a-very-long-stack-name-for-a-team-environment-2", "c" * 32)


def test_plan_function_rejects_problems_found_only_when_planning():
    from kindmesh.core.config import parse_config

    cfg = parse_config({"clusters": [{"name": "us", "id": 1, "podSubnet": "172.30.0.0/16"}],
                        "network": {"subnet": "172.30.0.0/16"}})
    with pytest.raises(ConfigError) as err:
        plan(cfg, stack="dev")
    assert "kindmesh:clusters[0].podSubnet" in str(err.value)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_disable_default_kubernetes_and_docker_providers(stack):
    import yaml

    from tests.helpers import ROOT

    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert {"kubernetes", "docker"} <= set(config["pulumi:disable-default-providers"])


def test_default_subnet_avoids_taken_ones_and_an_explicit_subnet_is_kept():
    from kindmesh.core.naming import DEFAULT_SUBNETS, default_subnet, free_subnet

    own = default_subnet("lab")
    assert own == free_subnet("lab", [], DEFAULT_SUBNETS)  # the hashed slot when nothing is taken
    nxt = default_subnet("lab", [own])
    assert nxt != own and nxt == DEFAULT_SUBNETS[(DEFAULT_SUBNETS.index(own) + 1) % len(DEFAULT_SUBNETS)]
    assert default_subnet("lab", ["172.16.0.0/12"]) == own  # nothing free: the hashed one (caller reports)
    raw = {"clusters": [{"name": "a", "id": 1}]}
    assert load_plan(raw, stack="lab", avoid_subnets=[own]).network.subnet == nxt
    explicit = dict(raw, network={"subnet": own})
    assert load_plan(explicit, stack="lab", avoid_subnets=[own]).network.subnet == own
