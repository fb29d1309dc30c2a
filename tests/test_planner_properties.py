"""Hypothesis properties of the planner over generated valid topologies (1..64 clusters)."""

from __future__ import annotations

import ipaddress
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindmesh.core.planner import load_plan

NAME = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,5})?", fullmatch=True).filter(lambda n: n != "default")


@st.composite
def topologies(draw):
    n = draw(st.integers(1, 64))
    names = draw(st.lists(NAME, min_size=n, max_size=n, unique=True))
    ids = draw(st.lists(st.integers(1, 255), min_size=n, max_size=n, unique=True))
    pool_size = draw(st.sampled_from([4, 8, 16, 32]))
    workers = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    # smallest subnet whose upper half holds the pool of the largest id (+ broadcast)
    need = max(ids) * pool_size + 1
    max_prefix = 32 - (math.ceil(math.log2(need)) + 1)
    prefix = draw(st.integers(16, max(16, min(max_prefix, 28))))
    second = draw(st.integers(16, 31).filter(lambda n: n != 17))  # 172.17/16: docker0, refused
    subnet = ipaddress.ip_network(f"172.{second}.0.0/16").subnets(new_prefix=prefix)
    subnet = next(iter(subnet))
    topology = draw(st.sampled_from(["full", "hub", "none"]))
    mesh = {"topology": topology}
    if topology == "hub":
        mesh["hub"] = draw(st.sampled_from(names))
    clusters = [
        {"name": nm, "id": cid, "workers": w}
        for nm, cid, w in zip(names, ids, workers, strict=True)
    ]
    raw = {
        "clusters": clusters,
        "mesh": mesh,
        "network": {"subnet": str(subnet), "poolSize": pool_size},
        "cilium": {"hubbleUi": draw(st.booleans())},
    }
    stack = draw(st.sampled_from(["dev", "prod", "team_a.lab", "x"]))
    return raw, stack


def addr(text):
    return ipaddress.ip_address(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies())
def test_plan_invariants(case):
    raw, stack = case
    plan = load_plan(raw, stack=stack)
    docker = ipaddress.ip_network(plan.network.subnet)
    node_range = ipaddress.ip_network(plan.network.node_range)
    reserved = {docker.network_address, docker.broadcast_address, addr(plan.network.gateway)}
    assert node_range.subnet_of(docker)
    assert addr(plan.network.gateway) in node_range

    cidrs = []
    pools = []
    for c in plan.clusters:
        first, last = addr(c.pool_first), addr(c.pool_last)
        assert first <= last
        assert int(last) - int(first) + 1 == plan.network.pool_size
        # pools in the docker subnet, above the node range, never reserved addresses
        assert first in docker and last in docker
        assert int(first) > int(node_range.broadcast_address)
        assert not any(int(first) <= int(r) <= int(last) for r in reserved)
        # the mesh IP (and Hubble UI IP) lie inside the cluster's own pool
        assert first <= addr(c.mesh_ip) <= last
        if c.hubble_ui_ip is not None:
            assert first <= addr(c.hubble_ui_ip) <= last and c.hubble_ui_ip != c.mesh_ip
        pools.append((int(first), int(last)))
        cidrs += [ipaddress.ip_network(c.pod_subnet), ipaddress.ip_network(c.service_subnet)]
        assert len(c.node_names) == 1 + c.workers
        assert c.control_plane == c.node_names[0]
        assert len(c.control_plane) <= 63

    # all ranges disjoint
    pools.sort()
    for (_a0, a1), (b0, _b1) in zip(pools, pools[1:], strict=False):
        assert a1 < b0
    for i, a in enumerate(cidrs):
        assert not a.overlaps(docker)
        for b in cidrs[i + 1:]:
            assert not a.overlaps(b)
    assert len({c.kind_name for c in plan.clusters}) == len(plan.clusters)
    assert len({c.id for c in plan.clusters}) == len(plan.clusters)

    # peers symmetric and as the topology says
    by_name = {c.name: c for c in plan.clusters}
    for c in plan.clusters:
        assert c.name not in c.peers
        for p in c.peers:
            assert c.name in by_name[p].peers
    topology = raw["mesh"]["topology"]
    n = len(plan.clusters)
    if topology == "none":
        assert all(not c.peers for c in plan.clusters)
    elif topology == "full":
        assert all(len(c.peers) == n - 1 for c in plan.clusters)
    else:
        hub = raw["mesh"]["hub"]
        assert set(by_name[hub].peers) == set(by_name) - {hub}
        for c in plan.clusters:
            if c.name != hub:
                assert c.peers == (hub,)

    # deterministic
    assert load_plan(raw, stack=stack) == plan


@settings(max_examples=60, deadline=None)
@given(topologies(), st.data())
def test_adding_a_cluster_never_moves_existing_ones(case, data):
    raw, stack = case
    before = load_plan(raw, stack=stack)
    used = {c["id"] for c in raw["clusters"]}
    names = {c["name"] for c in raw["clusters"]}
    max_id = max(used)
    free = [i for i in range(1, max_id + 1) if i not in used]
    if not free:
        return  # every id up to the subnet's capacity may be taken; nothing to add in place
    new_id = data.draw(st.sampled_from(free))
    new_name = data.draw(NAME.filter(lambda x: x not in names))
    grown = dict(raw, clusters=raw["clusters"] + [{"name": new_name, "id": new_id, "workers": 0}])
    after = load_plan(grown, stack=stack)
    assert after.network == before.network
    for old in before.clusters:
        new = after.cluster(old.name)
        assert (new.kind_name, new.pod_subnet, new.service_subnet, new.pool, new.mesh_ip, new.hubble_ui_ip) == (
            old.kind_name, old.pod_subnet, old.service_subnet, old.pool, old.mesh_ip, old.hubble_ui_ip)
