"""Hypothesis properties of planning existing clusters (and mixing them with kind clusters)."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindmesh.core.planner import load_plan
from kindmesh.core.render import cilium_values

KUBECONFIG = (
    "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
    "clusters:\n- name: lab\n  cluster:\n    server: https://192.0.2.1:6443\n"
    "contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n"
    "users:\n- name: lab\n  user:\n    token: SECRET-TOKEN\n"
)


def existing(cid: int, endpoint: str) -> dict:
    ep = {
        "nodePort": {"nodePort": 30000 + cid, "nodeIPs": [f"192.168.{cid}.10", f"192.168.{cid}.11"]},
        "pool": {"loadBalancer": {"pool": f"172.16.{cid}.240-172.16.{cid}.250"}},
        "ip": {"loadBalancer": {"ip": f"172.17.{cid}.10"}},
    }[endpoint]
    return {"name": f"c{cid}", "id": cid, "source": "existing", "kubeconfig": KUBECONFIG,
            "apiServer": f"192.168.{cid}.10:6443", "podSubnet": f"10.{cid}.0.0/16",
            "serviceSubnet": f"10.{cid + 128}.0.0/16", "meshEndpoint": ep}


@st.composite
def stacks(draw):
    ids = draw(st.lists(st.integers(1, 120), min_size=2, max_size=12, unique=True))
    endpoints = draw(st.lists(st.sampled_from(["nodePort", "pool", "ip"]), min_size=len(ids), max_size=len(ids)))
    clusters = [existing(i, e) for i, e in zip(ids, endpoints, strict=True)]
    kinds = draw(st.integers(0, 2))
    # kind clusters: ids above the existing ones; their defaults 10.<id>.0.0/17 stay clear
    clusters += [{"name": f"k{j}", "id": 121 + j, "workers": 0} for j in range(kinds)]
    order = draw(st.permutations(range(len(clusters))))
    topology = draw(st.sampled_from(["full", "hub", "none"]))
    mesh: dict = {"topology": topology, "routable": True}
    if topology == "hub":
        mesh["hub"] = clusters[0]["name"]
    raw = {"clusters": [clusters[i] for i in order], "mesh": mesh, "network": {"subnet": "172.30.0.0/16"}}
    return raw


def endpoint_of(cluster: dict) -> tuple[int, list[str]]:
    ep = cluster["meshEndpoint"]
    if "nodePort" in ep:
        return ep["nodePort"], ep["nodeIPs"]
    lb = ep["loadBalancer"]
    return 2379, [lb["ip"]] if "ip" in lb else [lb["pool"].split("-")[0]]


def strip(plan_cluster):
    return dataclasses.replace(plan_cluster, peers=())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_existing_plan_invariants(raw):
    plan = load_plan(raw, stack="remote")
    given_by_name = {c["name"]: c for c in raw["clusters"]}
    assert "SECRET-TOKEN" not in repr(plan)
    for c in plan.clusters:
        for peer in plan.peer_entries(c.name):
            cfg = given_by_name[peer["name"]]
            if cfg.get("source") == "existing":
                assert (peer["port"], peer["ips"]) == endpoint_of(cfg)
            else:
                assert (peer["port"], peer["ips"]) == (2379, [plan.cluster(peer["name"]).mesh_ip])
        if c.source == "existing":
            assert c.kind_name == "" and c.node_names == ()
            v = cilium_values(plan, c, plan.peer_entries(c.name))
            assert v["k8sServiceHost"] == given_by_name[c.name]["apiServer"].split(":")[0]
            assert v["cluster"] == {"name": c.name, "id": c.id}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks(), st.data())
def test_removing_or_reordering_a_cluster_changes_nothing_else(raw, data):
    plan = load_plan(raw, stack="remote")
    hub = raw["mesh"].get("hub")
    candidates = [c for c in raw["clusters"] if c["name"] != hub]
    gone = data.draw(st.sampled_from(candidates))["name"]
    smaller = dict(raw, clusters=[c for c in raw["clusters"] if c["name"] != gone])
    reordered = dict(raw, clusters=list(reversed(raw["clusters"])))
    for other_raw in (smaller, reordered):
        other = load_plan(other_raw, stack="remote")
        for c in other.clusters:
            assert strip(c) == strip(plan.cluster(c.name))
