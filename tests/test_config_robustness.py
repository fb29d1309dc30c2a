"""Any configuration gives a plan or a ConfigError: never another exception, never an
unbounded message, every key named ``kindmesh:…``, each root cause reported once."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindmesh.core.collector import TOP_KEYS
from kindmesh.core.config import CLUSTER_KEYS
from kindmesh.core.config_raw import decode_raw
from kindmesh.core.model import PROBLEMS_SHOWN, ConfigError, StackPlan
from kindmesh.core.planner import load_plan

MESSAGE_MAX = 8 * 1024


class Huge:
    """Stands for a 5000-digit integer while hypothesis draws (it reprs what it draws, and
    repr() of such an int raises); :func:`real` swaps in the int before the code runs."""

    def __init__(self, sign: int = 1):
        self.sign = sign

    def __repr__(self) -> str:
        return f"Huge({self.sign})"


def real(tree):
    if isinstance(tree, Huge):
        return tree.sign * 10**5000
    if isinstance(tree, dict):
        return {k: real(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [real(v) for v in tree]
    return tree
NET = {"subnet": "172.30.0.0/16"}


def outcome(raw, stack="dev"):
    """The plan, or the ConfigError; any other exception fails the test."""
    try:
        return load_plan(raw, stack=stack)
    except ConfigError as err:
        return err


def assert_clean_error(err):
    assert isinstance(err, ConfigError), err
    text = str(err)
    assert len(text) < MESSAGE_MAX, len(text)
    assert err.problems
    for p in err.problems:
        assert p.key.startswith("kindmesh:"), p.key
        assert len(str(p)) < 2000
    return text


def problems_at(raw, key):
    err = outcome(raw)
    assert_clean_error(err)
    return [p.message for p in err.problems if p.key == key]


# --- generated inputs --------------------------------------------------------------------

HUGE_DIGITS = "9" * 4400
EDGE_CIDRS = [
    "0.0.0.0/0", "0.0.0.0/16", "127.0.0.0/8", "127.0.0.1/32", "169.254.0.0/16", "224.0.0.0/4",
    "240.0.0.0/4", "255.255.255.255/32", "10.0.0.0/8", "10.1.0.0/16", "10.9.0.0/24", "10.9.0.0/30",
    "172.30.0.0/16", "172.30.0.0/28", "172.30.0.0/31", "192.168.0.0/16", "::1/128", "fd00::/64",
    "10.1.0.0/33", "10.1.0.1/24", "1.2.3.4", "", " ", "x" * 5000, HUGE_DIGITS,
]
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.builds(Huge, st.sampled_from([1, -1])),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.just("x" * 100_000), st.just(HUGE_DIGITS), st.just("-" + HUGE_DIGITS),
    st.sampled_from(EDGE_CIDRS),
    st.sampled_from(["true", "FALSE", "full", "hub", "none", "wireguard", "local", "kind", "host", "bridge",
                     "us", "eu", "default", "1", "255", "256", "0", "-1", "00000000000000000000000000001"]),
)
VERSIONS = st.one_of(SCALARS, st.sampled_from(["1.19.6", "v0.15.3", "1.20.0-rc.1", "1.2", "1.2.3.4", "latest"]))
IMAGES = st.one_of(SCALARS, st.sampled_from(["kindest/node:v1.34.0", "kindest/node:v1.34.0@sha256:" + "a" * 64,
                                              "a b@sha256:", "Kindest/Node", "x@sha256:" + "0" * 100_000]))
KEYS = st.one_of(
    st.sampled_from(list(TOP_KEYS) + list(CLUSTER_KEYS) + ["subnet", "poolSize", "topology", "hub", "hubbleUi",
                                                           "nodeImage", "prePull", "affinity", "shared"]),
    st.sampled_from(["network.poolSize", "clusters[0].id", "mesh.topology", "cilium.hubble", "kindmesh:x"]),
    st.text(max_size=12), st.just("k" * 10_000),
)
TREES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
    max_leaves=16,
)


@st.composite
def cluster_entries(draw):
    entry = draw(st.dictionaries(KEYS, TREES, max_size=2))
    if draw(st.booleans()):
        entry["name"] = draw(st.one_of(st.sampled_from(["us", "eu", "ap", "a-b", "US", "x" * 40]), SCALARS))
    if draw(st.integers(0, 3)):
        entry["id"] = draw(st.one_of(st.integers(0, 257), SCALARS))
    for key, values in (
        ("workers", st.one_of(st.integers(-2, 70), SCALARS)),
        ("podSubnet", st.sampled_from(EDGE_CIDRS)),
        ("serviceSubnet", st.sampled_from(EDGE_CIDRS)),
    ):
        if draw(st.integers(0, 3)) == 0:
            entry[key] = draw(values)
    return entry


@st.composite
def many_clusters(draw):
    """255..1000 clusters built from one pattern (drawing each would be slow)."""
    n = draw(st.sampled_from([255, 256, 1000]))
    ids = draw(st.sampled_from(["sequential", "same", "missing", "offset", "mod"]))
    names = draw(st.sampled_from(["distinct", "same"]))
    out = []
    for i in range(n):
        entry = {"name": f"c{i}" if names == "distinct" else "c", "workers": 0}
        if ids == "sequential":
            entry["id"] = i + 1
        elif ids == "same":
            entry["id"] = 7
        elif ids == "offset":
            entry["id"] = i + 2
        elif ids == "mod":
            entry["id"] = i % 10 + 1
        out.append(entry)
    return out


@st.composite
def configs(draw):
    raw = draw(st.dictionaries(KEYS, TREES, max_size=3))
    shape = draw(st.integers(0, 9))
    if shape == 0:
        raw["clusters"] = draw(many_clusters())
    elif shape <= 6:
        raw["clusters"] = draw(st.lists(cluster_entries(), max_size=5))
    else:
        raw["clusters"] = draw(TREES)
    for top, sub in (("network", {"subnet": st.sampled_from(EDGE_CIDRS), "name": SCALARS,
                                  "poolSize": st.one_of(st.integers(-5, 5000), SCALARS)}),
                     ("mesh", {"topology": SCALARS, "hub": SCALARS}),
                     ("cilium", {"hubble": SCALARS, "hubbleUi": SCALARS, "encryption": SCALARS, "version": VERSIONS}),
                     ("metallb", {"version": VERSIONS}),
                     ("kind", {"nodeImage": IMAGES, "prePull": SCALARS}),
                     ("demo", {"enabled": SCALARS, "policy": SCALARS, "backendImage": IMAGES, "clientImage": IMAGES}),
                     ("verify", {"onUp": SCALARS})):
        if draw(st.booleans()):
            raw[top] = {k: draw(v) for k, v in sub.items() if draw(st.booleans())}
        elif draw(st.integers(0, 4)) == 0:
            raw[top] = draw(TREES)
    return raw


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs(), st.sampled_from(["dev", "Team.A", "team_a", "x" * 100]))
def test_any_config_gives_a_plan_or_a_bounded_config_error(raw, stack):
    result = outcome(real(raw), stack)
    if isinstance(result, StackPlan):
        assert len({c.id for c in result.clusters}) == len(result.clusters)
        assert all(1 <= c.id <= 255 for c in result.clusters)
    else:
        assert_clean_error(result)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.one_of(KEYS, st.sampled_from(list(TOP_KEYS))), TREES, max_size=6))
def test_arbitrary_json_like_trees_never_escape_as_other_exceptions(raw):
    result = outcome(real(raw))
    if not isinstance(result, StackPlan):
        assert_clean_error(result)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["kindmesh:clusters", "kindmesh:network", "kindmesh:network.poolSize",
                                        "other:key", "kindmesh:mesh"]),
                       st.one_of(st.text(max_size=30), TREES.map(lambda t: json.dumps(t, default=lambda h: f"HUGE{h.sign}")))))
def test_decoded_pulumi_config_values_plan_or_fail_cleanly(merged):
    # JSON numbers of 4400 digits, as `pulumi config set --path … 999…` would store them
    merged = {k: v.replace('"HUGE1"', "9" * 4400).replace('"HUGE-1"', "-" + "9" * 4400) for k, v in merged.items()}
    try:
        raw = decode_raw(merged)
    except ConfigError as err:
        assert_clean_error(err)
        return
    result = outcome(raw)
    if not isinstance(result, StackPlan):
        assert_clean_error(result)


# --- the classes of issue 11, one example each -----------------------------------------------

def test_deep_json_is_a_config_error_naming_the_key_not_a_recursion_error():
    with pytest.raises(ConfigError) as err:
        decode_raw({"kindmesh:clusters": "[" * 100_000 + "]" * 100_000, "kindmesh:mesh": '{"topology": "full"}'})
    text = assert_clean_error(err.value)
    assert [p.key for p in err.value.problems] == ["kindmesh:clusters"] and "deep" in text
    ok = decode_raw({"kindmesh:clusters": json.dumps([{"name": "us", "id": 1, "demo": {"shared": True}}]),
                     "kindmesh:network": "not json", "aws:region": "x"})
    assert ok == {"clusters": [{"name": "us", "id": 1, "demo": {"shared": True}}], "network": "not json"}


def test_deeply_nested_python_values_are_described_not_recursed():
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    assert_clean_error(outcome({"clusters": [{"name": "us", "id": deep}], "network": deep, "mesh": {"hub": deep}}))


@pytest.mark.parametrize("key,value", [("id", HUGE_DIGITS), ("id", 10**5000), ("workers", "-" + HUGE_DIGITS),
                                       ("workers", 10**5000)],
                         ids=["id-digits", "id-int", "workers-digits", "workers-int"])
def test_huge_numbers_are_reported_not_converted(key, value):
    msgs = problems_at({"clusters": [{"name": "us", "id": 1, **{key: value}}], "network": NET},
                       f"kindmesh:clusters[0].{key}")
    assert msgs and all(len(m) < 300 for m in msgs)


def test_huge_pool_size_string_and_leading_zeros():
    assert problems_at({"clusters": [{"name": "us", "id": 1}], "network": {**NET, "poolSize": HUGE_DIGITS}},
                       "kindmesh:network.poolSize")
    p = load_plan({"clusters": [{"name": "us", "id": "007"}, {"name": "eu", "id": "0" * 5000 + "2"}],
                   "network": NET}, stack="dev")
    assert [c.id for c in p.clusters] == [2, 7]  # ordered by id


def test_a_huge_name_is_quoted_briefly():
    err = outcome({"clusters": [{"name": "n" * 100_000, "id": 1}], "network": NET})
    text = assert_clean_error(err)
    assert len(text) < 1000 and "…" in text


def test_256_clusters_is_one_clear_problem():
    raw = {"clusters": [{"name": f"c{i}", "id": i + 1, "workers": 0} for i in range(256)], "network": NET}
    msgs = problems_at(raw, "kindmesh:clusters")
    assert len(msgs) == 1 and "at most 255" in msgs[0]


def test_255_clusters_plan():
    raw = {"clusters": [{"name": f"c{i}", "id": i + 1, "workers": 0} for i in range(255)], "network": NET}
    plan = load_plan(raw, stack="dev")
    assert [c.id for c in plan.clusters] == list(range(1, 256))


def test_one_id_shared_by_1000_clusters_is_one_problem():
    raw = {"clusters": [{"name": f"c{i}", "id": 7, "workers": 0} for i in range(1000)], "network": NET}
    err = outcome(raw)
    text = assert_clean_error(err)
    dup = [p for p in err.problems if "duplicate cluster id" in p.message]
    assert len(dup) == 1 and dup[0].key == "kindmesh:clusters[1].id"
    assert "clusters[0]" in dup[0].message and "more" in dup[0].message
    assert len(err.problems) < 10
    assert len(text) < 3000


def test_1000_clusters_without_ids_give_a_bounded_report():
    err = outcome({"clusters": [{"name": f"c{i}"} for i in range(1000)], "network": NET})
    assert_clean_error(err)
    assert len(err.problems) <= PROBLEMS_SHOWN + 2


def test_missing_ids_suggest_distinct_lowest_free_ids():
    raw = {"clusters": [{"name": "us", "id": 1}, {"name": "eu"}, {"name": "ap", "id": 3}, {"name": "sa"}],
           "network": NET}
    (eu,) = problems_at(raw, "kindmesh:clusters[1].id")
    (sa,) = problems_at(raw, "kindmesh:clusters[3].id")
    assert "add `id: 2`" in eu and "free ids: 2, 4, 5…" in eu
    assert "add `id: 4`" in sa


def test_duplicate_id_names_both_places_and_a_free_id():
    raw = {"clusters": [{"name": "us", "id": 1}, {"name": "eu", "id": 2}, {"name": "ap", "id": 1}], "network": NET}
    (msg,) = problems_at(raw, "kindmesh:clusters[2].id")
    assert "clusters[0]" in msg and "clusters[2]" in msg and "`id: 3`" in msg


@pytest.mark.parametrize("cidr", ["127.0.0.0/16", "224.0.0.0/16", "169.254.0.0/16", "0.0.0.0/16", "240.0.0.0/16",
                                  "0.0.0.0/0"])
@pytest.mark.parametrize("where", ["podSubnet", "serviceSubnet", "network.subnet"])
def test_special_ranges_are_rejected_with_a_private_range_fix(cidr, where):
    cluster = {"name": "us", "id": 1}
    raw = {"clusters": [cluster], "network": dict(NET)}
    if where == "network.subnet":
        raw["network"]["subnet"] = cidr
        key = "kindmesh:network.subnet"
    else:
        cluster[where] = cidr
        key = f"kindmesh:clusters[0].{where}"
    msgs = problems_at(raw, key)
    assert msgs and any("private range" in m for m in msgs), msgs


@pytest.mark.parametrize("name", ["host", "bridge", "none", "kind"])
def test_foreign_network_names_are_rejected(name):
    msgs = problems_at({"clusters": [{"name": "us", "id": 1}], "network": {**NET, "name": name}},
                       "kindmesh:network.name")
    assert msgs and "own" in msgs[0]


@pytest.mark.parametrize("workers,pod,ok", [(0, "10.1.0.0/24", True), (1, "10.1.0.0/24", False),
                                             (1, "10.1.0.0/23", True), (3, "10.1.0.0/23", False),
                                             (3, "10.1.0.0/22", True), (64, "10.1.0.0/18", False),
                                             (64, "10.1.0.0/17", True)])
def test_pod_cidr_must_give_every_node_its_24(workers, pod, ok):
    raw = {"clusters": [{"name": "us", "id": 1, "workers": workers, "podSubnet": pod}], "network": NET}
    result = outcome(raw)
    if ok:
        assert isinstance(result, StackPlan)
    else:
        msgs = problems_at(raw, "kindmesh:clusters[0].podSubnet")
        assert msgs and "/24" in msgs[0]


@pytest.mark.parametrize("flat", ["network.poolSize", "clusters[0].id", "mesh.topology"])
def test_flat_key_that_looks_like_a_path_gets_the_path_hint(flat):
    msgs = problems_at({"clusters": [{"name": "us", "id": 1}], "network": NET, flat: "32"}, f"kindmesh:{flat}")
    assert msgs and f"pulumi config set --path 'kindmesh:{flat}'" in msgs[0]


@pytest.mark.parametrize("key,value", [("cilium", {"version": "x" * 100_000}), ("metallb", {"version": "latest"}),
                                       ("kind", {"nodeImage": "k" * 100_000 + "@sha256:" + "0" * 64}),
                                       ("demo", {"clientImage": "curl 8@sha256:"})])
def test_versions_and_images_are_checked_and_quoted_briefly(key, value):
    sub = next(iter(value))
    msgs = problems_at({"clusters": [{"name": "us", "id": 1}], "network": NET, key: value}, f"kindmesh:{key}.{sub}")
    assert msgs and all(len(m) < 400 for m in msgs)


def test_unknown_top_level_key_is_named_with_a_colon():
    err = outcome({"clusters": [{"name": "us", "id": 1}], "network": NET, "cluster": 1})
    assert [p.key for p in err.problems] == ["kindmesh:cluster"]


def test_many_problems_are_capped_with_a_count():
    raw = {"clusters": [{"name": "us", "id": 1}], "network": NET, **{f"typo{i}": 1 for i in range(500)}}
    err = outcome(raw)
    text = assert_clean_error(err)
    assert len(err.problems) == 500
    assert text.count("\n  - ") == PROBLEMS_SHOWN and "485 more problem(s)" in text


def test_one_docker_subnet_overlapping_every_cluster_is_one_problem():
    raw = {"clusters": [{"name": f"c{i}", "id": i + 1, "workers": 0} for i in range(40)],
           "network": {"subnet": "10.0.0.0/8"}}
    err = outcome(raw)
    assert_clean_error(err)
    assert [p.key for p in err.problems] == ["kindmesh:network.subnet"]


def test_one_pod_cidr_shared_by_many_clusters_is_one_problem_per_cluster_not_per_pair():
    raw = {"clusters": [{"name": f"c{i}", "id": i + 1, "workers": 0, "podSubnet": "10.200.0.0/16"}
                        for i in range(100)], "network": NET}
    err = outcome(raw)
    assert_clean_error(err)
    assert len(err.problems) == 99
