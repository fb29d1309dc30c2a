"""Registered resource inputs (under Pulumi mocks): reordering the clusters changes no input
at all; removing one changes no input of any other cluster but its peer list."""

from __future__ import annotations

from tests.helpers import stack_raw
from tests.mocks import evaluate


def inputs_by_name(rec):
    return {(r.type, r.name): r.inputs for r in rec.resources}


def without_peers(values):
    return dict(values, clustermesh=dict(values["clustermesh"], config=None))


def test_reordering_the_clusters_changes_no_input():
    raw = stack_raw("trio")
    before = inputs_by_name(evaluate(raw, "trio"))
    after = inputs_by_name(evaluate(dict(raw, clusters=raw["clusters"][::-1]), "trio"))
    assert after == before


def test_removing_a_cluster_changes_only_the_peer_lists_of_the_others():
    raw = stack_raw("trio")
    before = inputs_by_name(evaluate(raw, "trio"))
    rest = [c for c in raw["clusters"] if c["name"] != "us"][::-1]
    after = inputs_by_name(evaluate(dict(raw, clusters=rest), "trio"))

    gone = {k for k in before if k not in after}
    assert gone and all(name == "us" or name.startswith("us-") for _, name in gone)
    assert set(after) <= set(before)
    changed = {k for k in after if after[k] != before[k]}
    # the mesh component summarises every cluster; each cluster's own resources keep
    # every input except its Cilium peer list
    names = {name for _, name in changed}
    assert {"eu-cilium", "ap-cilium"} <= names <= {"eu-cilium", "ap-cilium", "mesh"}  # full mesh: both lose us
    for k in changed - {k for k in changed if k[1] == "mesh"}:
        assert without_peers(after[k]["values"]) == without_peers(before[k]["values"])
        peers = after[k]["values"]["clustermesh"]["config"]["clusters"]
        old = before[k]["values"]["clustermesh"]["config"]["clusters"]
        assert peers == [p for p in old if p["name"] != "us"]
