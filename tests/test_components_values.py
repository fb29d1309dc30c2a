"""kind_cilium_values: working Cilium values without a plan, the same as the stack's."""

from __future__ import annotations

from typing import Any

import pytest

from kindmesh.core.planner import load_plan, network_layout, pool_for
from kindmesh.core.render import cilium_values, kind_cilium_values
from kindmesh.core.versions import CILIUM
from tests.helpers import stack_raw
from tests.upstream import schema_errors, unknown_key_paths

VERSIONS = [v for line in CILIUM.values() for v in line.validated]  # as tests/test_cilium_release.py


def leaves(values: dict[str, Any], path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        at = f"{path}.{key}" if path else key
        if isinstance(value, dict) and value:
            out.update(leaves(value, at))
        else:
            out[at] = value
    return out


def dig(values: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        assert isinstance(values, dict) and key in values, f"{path}: {key} missing"
        values = values[key]
    return values


@pytest.mark.parametrize("stack", ["dev", "trio"])
def test_every_leaf_it_sets_equals_the_stacks(stack):
    plan = load_plan(stack_raw(stack), stack=stack)
    kind = [c for c in plan.clusters if c.source == "kind"]
    assert kind
    cfg = plan.config.cilium
    for cluster in kind:
        mine = kind_cilium_values(control_plane=cluster.control_plane, mesh_ip=cluster.mesh_ip,
                                  hubble=cfg.hubble, hubble_ui=cfg.hubble_ui)
        theirs = cilium_values(plan, cluster)
        for path, value in leaves(mine).items():
            assert dig(theirs, path) == value, path


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kw", [
    dict(control_plane="solo-control-plane"),
    dict(control_plane="solo-control-plane", node_port=32379, hubble=False),
    dict(control_plane="solo-control-plane", mesh_ip="172.27.0.254", hubble_ui=True),
])
def test_it_validates_against_the_chart(kw, version):
    values = kind_cilium_values(**kw)
    assert schema_errors(values, f"cilium-{version}") == []
    assert unknown_key_paths(values, f"cilium-{version}") == []


def test_service_is_a_load_balancer_with_an_ip_else_a_node_port():
    lb = kind_cilium_values(control_plane="c", mesh_ip="172.27.0.254")["clustermesh"]["apiserver"]["service"]
    assert lb == {"type": "LoadBalancer", "loadBalancerIP": "172.27.0.254"}
    np = kind_cilium_values(control_plane="c", node_port=32379)["clustermesh"]["apiserver"]["service"]
    assert np == {"type": "NodePort", "nodePort": 32379}
    assert kind_cilium_values(control_plane="c", hubble=False)["hubble"]["ui"]["enabled"] is False


def test_pool_helpers_keep_node_ips_out_of_the_pools():
    nodes, region = network_layout("172.27.0.0/24")
    for cid in (1, 2, 3):
        first, last = pool_for("172.27.0.0/24", 8, cid)
        assert first in region and last in region and first not in nodes
