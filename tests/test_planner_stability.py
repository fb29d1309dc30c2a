"""Stable identities: removing or reordering clusters, and distinct stack names.

* Removing any one cluster, or permuting the list, changes nothing of any other cluster
  (kind inputs, CIDRs, pool, mesh IP, Hubble IP, id) and its peers only by the removed one.
* Distinct stack names never share a kind name, docker network or stack label; distinct
  (stack, cluster) pairs never share a kind name; every name fits its tool's rules.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindmesh.core.model import stack_label, stack_slug
from kindmesh.core.naming import KIND_NAME_MAX, kind_name_for, network_name_for
from kindmesh.core.planner import load_plan
from tests.test_planner_properties import NAME, topologies

FIELDS = ("name", "id", "kind_name", "context", "control_plane", "node_names", "workers", "pod_subnet",
          "service_subnet", "pool_first", "pool_last", "mesh_ip", "hubble_ui_ip", "demo")


def decisions(cluster):
    return {f: getattr(cluster, f) for f in FIELDS}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(), st.data())
def test_removing_or_reordering_a_cluster_changes_no_other_cluster(case, data):
    raw, stack = case
    before = load_plan(raw, stack=stack)
    clusters = raw["clusters"]
    hub = raw["mesh"].get("hub")
    removable = [i for i, c in enumerate(clusters) if c["name"] != hub]
    if len(clusters) < 2 or not removable:
        return
    gone = data.draw(st.sampled_from(removable))
    removed = clusters[gone]["name"]
    rest = clusters[:gone] + clusters[gone + 1 :]
    shuffled = data.draw(st.permutations(rest))
    after = load_plan(dict(raw, clusters=list(shuffled)), stack=stack)

    assert after.network == before.network
    assert after.stack_label == before.stack_label
    assert {c.name for c in after.clusters} == {c.name for c in before.clusters} - {removed}
    for new in after.clusters:
        old = before.cluster(new.name)
        assert decisions(new) == decisions(old)
        assert new.peers == tuple(p for p in old.peers if p != removed)
        assert after.peer_entries(new.name) == [e for e in before.peer_entries(new.name) if e["name"] != removed]
    assert after.links == tuple(link for link in before.links if removed not in (link.a, link.b))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(), st.data())
def test_permuting_the_cluster_list_changes_nothing_at_all(case, data):
    raw, stack = case
    before = load_plan(raw, stack=stack)
    shuffled = data.draw(st.permutations(raw["clusters"]))
    after = load_plan(dict(raw, clusters=list(shuffled)), stack=stack)
    assert (after.clusters, after.links, after.network) == (before.clusters, before.links, before.network)
    for c in before.clusters:
        assert after.peer_entries(c.name) == before.peer_entries(c.name)


def test_dropping_the_first_of_trio_keeps_eu_and_ap():
    from tests.helpers import stack_raw

    raw = stack_raw("trio")
    before = load_plan(raw, stack="trio")
    after = load_plan(dict(raw, clusters=raw["clusters"][1:]), stack="trio")
    for name in ("eu", "ap"):
        assert decisions(after.cluster(name)) == decisions(before.cluster(name))
    assert after.cluster("eu").peers == ("ap",)


# --- names: distinct stacks and (stack, cluster) pairs never collide --------------------

# Pulumi stack names: letters, digits, '-', '_', '.' (up to 100 characters). A small
# alphabet makes slugs collide often, which is what the hash has to settle.
STACK = st.one_of(
    st.text(alphabet="aAbB-_.1", min_size=1, max_size=8),
    st.from_regex(r"[a-zA-Z0-9._-]{1,100}", fullmatch=True),
    st.text(max_size=20),  # beyond Pulumi's rule (unicode, empty): names must still be valid
)
HOSTNAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
CLUSTER = st.one_of(NAME, st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True))


def check_kind_name(name):
    assert re.fullmatch(r"[a-z0-9.-]+", name), name  # kind's own rule
    assert len(name) <= KIND_NAME_MAX
    for node in (f"{name}-control-plane", f"{name}-worker", f"{name}-worker64"):
        assert len(node) <= 63 and HOSTNAME.fullmatch(node), node


@settings(max_examples=200, deadline=None)
@given(st.lists(STACK, min_size=2, max_size=6, unique=True))
def test_distinct_stacks_never_share_network_label_or_kind_names(stacks):
    for s in stacks:
        net = network_name_for(s)
        assert DOCKER_NAME.fullmatch(net), net
        label = stack_label("kindmesh", s)
        assert len(label) <= 63 and LABEL_VALUE.fullmatch(label), label
        check_kind_name(kind_name_for(s, "us"))
    assert len({stack_slug(s) for s in stacks}) == len(stacks)
    assert len({network_name_for(s) for s in stacks}) == len(stacks)
    assert len({stack_label("kindmesh", s) for s in stacks}) == len(stacks)
    assert len({kind_name_for(s, "us") for s in stacks}) == len(stacks)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(STACK, CLUSTER), min_size=2, max_size=8, unique=True))
def test_distinct_stack_cluster_pairs_never_share_a_kind_name(pairs):
    names = [kind_name_for(s, c) for s, c in pairs]
    for n in names:
        check_kind_name(n)
    assert len(set(names)) == len(pairs)


@pytest.mark.parametrize("a,b", [
    (("a-b", "c"), ("a", "b-c")),
    (("dev", "us"), ("Dev", "us")),
    (("team_a", "us"), ("team-a", "us")),
    (("team-a", "us"), ("Team.A", "us")),
    (("team", "a-us"), ("team-a", "us")),
])
def test_ambiguous_looking_pairs_get_distinct_kind_names(a, b):
    assert kind_name_for(*a) != kind_name_for(*b)


def test_readable_names_are_kept():
    assert kind_name_for("dev", "us") == "km-dev-us"
    assert network_name_for("dev") == "kindmesh-dev"
    assert stack_label("kindmesh", "dev") == "kindmesh.dev"
    assert network_name_for("team-a") == "kindmesh-team-a"
    for s in ("Dev", "team_a", "Team.A"):
        assert stack_slug(s).startswith(s.lower().replace("_", "-").replace(".", "-") + "--")
    assert len({stack_slug(s) for s in ("dev", "Dev", "team_a", "team-a", "Team.A")}) == 5


def test_long_stack_and_cluster_names_fit():
    s = "x" * 100
    check_kind_name(kind_name_for(s, "c" * 32))
    assert kind_name_for(s, "c" * 32) != kind_name_for(s + "y", "c" * 32)
    assert len(stack_label("p" * 100, s)) <= 63
    assert stack_label("p" * 100, s) != stack_label("p" * 100, s + "y")
