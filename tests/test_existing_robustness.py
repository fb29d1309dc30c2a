"""QA regressions for ``source: existing`` clusters and extra Cilium values: every bad input is a
ConfigError naming the key (never RecursionError/ValueError/OSError), bounded, one problem per
mistake, and unusable addresses or digits that only look like numbers are refused."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindmesh.core.collector import NESTING_MAX
from kindmesh.core.model import PROBLEMS_SHOWN, ConfigError
from kindmesh.core.planner import load_plan
from tests.helpers import stack_raw

MESSAGE_MAX = 8 * 1024
SECRET = "tok-SECRET-42"
KUBECONFIG = (
    "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
    "clusters:\n- name: lab\n  cluster:\n    server: https://192.0.2.1:6443\n"
    "contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n"
    f"users:\n- name: lab\n  user:\n    token: {SECRET}\n"
)
HUGE = 10**5000


def base() -> dict:
    raw = copy.deepcopy(stack_raw("remote"))
    for c in raw["clusters"]:
        c["kubeconfig"] = KUBECONFIG
    return raw


def E(**kw) -> dict:  # noqa: N802 - the brief's name: one valid existing cluster, keys changed
    raw = base()
    raw["clusters"][0].update(kw)
    return raw


def problems(raw) -> list:
    """The problems of a config that must fail cleanly (no other exception, bounded message)."""
    with pytest.raises(ConfigError) as info:
        load_plan(raw, stack="remote")
    err = info.value
    text = str(err)
    assert len(text) < MESSAGE_MAX
    assert SECRET not in text
    assert all(p.key.startswith("kindmesh:") for p in err.problems)
    return err.problems


def keys(raw) -> set[str]:
    return {p.key for p in problems(raw)}


def test_the_base_config_plans():
    assert [c.name for c in load_plan(base(), stack="remote").clusters]


# 1. deep kubeconfig YAML
@pytest.mark.parametrize("nest", [
    "[" * 5000 + "]" * 5000,
    "{a: " * 3000 + "1" + "}" * 3000,
    "".join(f"\n{'  ' * i}- " for i in range(1, 400)) + "x",
])
def test_deeply_nested_kubeconfig_is_a_config_error_without_the_content(nest):
    content = "apiVersion: v1\nkind: Config\nclusters: " + nest
    ps = problems(E(kubeconfig=content))
    assert [p.key for p in ps if "nested" in p.message] == ["kindmesh:clusters[0].kubeconfig"]
    assert all("[[[" not in str(p) for p in ps)


# 2, 11. digits that only look like numbers
@pytest.mark.parametrize("changes,key", [
    ({"apiServer": "a:²"}, "kindmesh:clusters[0].apiServer"),
    ({"apiServer": "a:６４４３"}, "kindmesh:clusters[0].apiServer"),
    ({"apiServer": "a:0"}, "kindmesh:clusters[0].apiServer"),
    ({"apiServer": "a:65536"}, "kindmesh:clusters[0].apiServer"),
    ({"id": "١"}, "kindmesh:clusters[0].id"),
    ({"id": "１"}, "kindmesh:clusters[0].id"),
    ({"meshEndpoint": {"nodePort": "３２３７９", "nodeIPs": ["192.168.56.11"]}},
     "kindmesh:clusters[0].meshEndpoint.nodePort"),
])
def test_only_ascii_digits_are_numbers(changes, key):
    assert key in keys(E(**changes))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.integers(0, 70000).map(str), st.text(min_size=1, max_size=6)))
def test_any_api_server_port_text_plans_or_fails_cleanly(port):
    raw = E(apiServer=f"k3s-a.example.test:{port}")
    try:
        plan = load_plan(raw, stack="remote")
    except ConfigError as err:
        assert "kindmesh:clusters[0].apiServer" in {p.key for p in err.problems}
        return
    digits = port.rstrip()  # surrounding whitespace of the whole value is ignored
    assert digits.isascii() and digits.isdigit() and 1 <= int(digits) <= 65535
    assert plan.cluster("k3s-a").existing.api_port == int(digits)


def test_ascii_numbers_still_parse():
    plan = load_plan(E(apiServer="k3s-a.example.test:06443", id=" 11 "), stack="remote")
    ex = plan.cluster("k3s-a").existing
    assert (ex.api_host, ex.api_port) == ("k3s-a.example.test", 6443)


# 3. kubeconfig paths the OS refuses
@pytest.mark.parametrize("path", ["/tmp/" + "k" * 300, "/tmp/" + "d/" * 3000 + "k.yaml", "/tmp/k\x00.yaml"])
def test_unusable_kubeconfig_paths_name_the_key(path):
    assert "kindmesh:clusters[0].kubeconfig" in keys(E(kubeconfig=path))


# 5. kubeProxyReplacement is the mesh's
@pytest.mark.parametrize("where", ["stack", "cluster"])
def test_kube_proxy_replacement_cannot_be_turned_off(where):
    values = {"kubeProxyReplacement": False}
    raw = dict(base(), cilium={"values": values}) if where == "stack" else E(cilium={"values": values})
    ps = problems(raw)
    prefix = "kindmesh:cilium.values" if where == "stack" else "kindmesh:clusters[0].cilium.values"
    hit = [p for p in ps if p.key == f"{prefix}.kubeProxyReplacement"]
    assert hit and "kube-proxy" in hit[0].message


def test_hubble_values_are_still_allowed():
    plan = load_plan(dict(base(), cilium={"values": {"hubble": {"relay": {"enabled": False}}}}), stack="remote")
    assert plan.config.cilium.values == {"hubble": {"relay": {"enabled": False}}}


# 6. huge integers anywhere a value is echoed
@pytest.mark.parametrize("raw,key", [
    (E(apiServer=HUGE), "kindmesh:clusters[0].apiServer"),
    (E(meshEndpoint={"nodePort": 32379, "nodeIPs": [HUGE]}), "kindmesh:clusters[0].meshEndpoint.nodeIPs[0]"),
    (E(meshEndpoint={"loadBalancer": {"pool": HUGE}}), "kindmesh:clusters[0].meshEndpoint.loadBalancer.pool"),
    (E(meshEndpoint={"loadBalancer": {"ip": HUGE}}), "kindmesh:clusters[0].meshEndpoint.loadBalancer.ip"),
    (dict(base(), cilium={"hubbleMetrics": HUGE}), "kindmesh:cilium.hubbleMetrics"),
    (dict(base(), cilium={"hubbleMetrics": ["dns", HUGE]}), "kindmesh:cilium.hubbleMetrics[1]"),
    (dict(base(), cilium={"values": {"operator": {"replicas": HUGE}}}), "kindmesh:cilium.values.operator.replicas"),
], ids=["apiServer", "nodeIPs", "pool", "ip", "metrics", "metric", "values"])
def test_huge_integers_are_config_errors(raw, key):
    assert key in keys(raw)


# 7, 8. values Pulumi cannot carry
def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [NESTING_MAX + 1, 5000])
@pytest.mark.parametrize("where", ["stack", "cluster"])
def test_deeply_nested_values_are_config_errors(depth, where):
    raw = dict(base(), cilium={"values": nested(depth)}) if where == "stack" else E(cilium={"values": nested(depth)})
    assert any("nested" in p.message for p in problems(raw))


def test_values_at_the_nesting_limit_plan():
    load_plan(dict(base(), cilium={"values": nested(NESTING_MAX - 2)}), stack="remote")


@pytest.mark.parametrize("values,key", [
    ({1: {"a": 1}}, "kindmesh:cilium.values"),
    ({"operator": {None: 1}}, "kindmesh:cilium.values.operator"),
    ({"operator": {"replicas": math.nan}}, "kindmesh:cilium.values.operator.replicas"),
    ({"operator": {"replicas": math.inf}}, "kindmesh:cilium.values.operator.replicas"),
    ({"operator": {"replicas": -math.inf}}, "kindmesh:cilium.values.operator.replicas"),
    ({"extraArgs": [{"x": [math.nan]}]}, "kindmesh:cilium.values.extraArgs[0].x[0]"),
    ({"extraArgs": [{2: "x"}]}, "kindmesh:cilium.values.extraArgs[0]"),
    ({"operator": {"x": {1, 2}}}, "kindmesh:cilium.values.operator.x"),
])
def test_values_pulumi_cannot_register_are_config_errors(values, key):
    assert key in keys(dict(base(), cilium={"values": values}))


@st.composite
def bad_trees(draw):
    leaf = st.one_of(st.floats(), st.integers(), st.text(max_size=3), st.booleans(), st.none())
    tree = st.recursive(leaf, lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(), st.floats()), kids, max_size=3)),
        max_leaves=12)
    return draw(st.dictionaries(st.text(max_size=3), tree, min_size=1, max_size=3))


def _clean(v) -> bool:
    if isinstance(v, dict):
        return all(isinstance(k, str) and _clean(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_clean(x) for x in v)
    return not (isinstance(v, float) and not math.isfinite(v)) and not (
        isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_trees())
def test_any_values_tree_plans_only_when_json_clean(values):
    raw = E(cilium={"values": values})
    try:
        plan = load_plan(raw, stack="remote")
    except ConfigError as err:
        assert len(str(err)) < MESSAGE_MAX
        assert any(p.key.startswith("kindmesh:clusters[0].cilium.values") for p in err.problems)
        # rejected only for a reason: unclean data, or a key the mesh owns (3-char keys: only `tls`)
        assert not _clean(values) or "tls" in values, values
        return
    assert _clean(values)
    assert plan.config.clusters[0].cilium_values == values


# 9. one mistake, one problem
def test_a_protected_prefix_is_reported_once_however_many_leaves():
    values = {"tls": {"ca": {f"k{i}": i for i in range(100_000)}}, "cluster": {"id": 3, "name": "x"}}
    ps = problems(dict(base(), cilium={"values": values}))
    assert [p.key for p in ps] == ["kindmesh:cilium.values.tls.ca", "kindmesh:cilium.values.cluster.id",
                                   "kindmesh:cilium.values.cluster.name"]


def test_many_bad_keys_are_bounded():
    ps = problems(dict(base(), cilium={"values": {i: i for i in range(10_000)}}))
    assert len(ps) <= PROBLEMS_SHOWN


# 10. unusable mesh addresses
@pytest.mark.parametrize("endpoint,key", [
    *[({"nodePort": 32379, "nodeIPs": [ip]}, "nodeIPs[0]")
      for ip in ("127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "169.254.1.1", "240.0.0.1")],
    ({"loadBalancer": {"ip": "127.0.0.1"}}, "loadBalancer.ip"),
    ({"loadBalancer": {"ip": "239.1.1.1"}}, "loadBalancer.ip"),
    ({"loadBalancer": {"pool": "0.0.0.0-0.0.0.9"}}, "loadBalancer.pool"),
    ({"loadBalancer": {"pool": "126.255.255.250-128.0.0.2"}}, "loadBalancer.pool"),  # spans loopback
    ({"loadBalancer": {"pool": "192.168.57.20-192.168.57.10"}}, "loadBalancer.pool"),  # first > last
])
def test_unusable_mesh_addresses_are_refused(endpoint, key):
    assert f"kindmesh:clusters[0].meshEndpoint.{key}" in keys(E(meshEndpoint=endpoint))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.ip_addresses(v=4))
def test_node_ips_in_special_ranges_never_plan(ip):
    import ipaddress

    raw = E(meshEndpoint={"nodePort": 32379, "nodeIPs": [str(ip)]})
    special = any(ip in ipaddress.IPv4Network(n) for n in
                  ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"))
    try:
        load_plan(raw, stack="remote")
    except ConfigError as err:
        if special:
            assert "kindmesh:clusters[0].meshEndpoint.nodeIPs[0]" in {p.key for p in err.problems}
        else:  # an ordinary address may clash with another cluster's, never be called special
            from kindmesh.core.collector import SPECIAL_RANGES

            assert not any(cidr in p.message for p in err.problems for cidr, _ in SPECIAL_RANGES), err
        return
    assert not special


def test_huge_integer_keys_are_named_without_str():
    raw = base()
    raw[HUGE] = 1
    raw["clusters"][0][HUGE] = 1
    raw["clusters"][0]["meshEndpoint"] = {HUGE: 1, "nodePort": 32379, "nodeIPs": ["192.168.56.11"]}
    assert len(problems(raw)) == 3


@pytest.mark.parametrize("server", ["https://k3s.example.test:６４４３", "https://k3s.example.test:²",
                                    "https://k3s.example.test:0", "https://k3s.example.test:70000"])
def test_kubeconfig_server_ports_are_ascii_and_in_range(server):
    content = KUBECONFIG.replace("https://192.0.2.1:6443", server)
    raw = E(kubeconfig=content)
    del raw["clusters"][0]["apiServer"]
    assert "kindmesh:clusters[0].kubeconfig" in keys(raw)


def test_kubeconfig_server_port_is_derived():
    raw = E(kubeconfig=KUBECONFIG.replace("https://192.0.2.1:6443", "https://k3s.example.test:7443"))
    del raw["clusters"][0]["apiServer"]
    ex = load_plan(raw, stack="remote").cluster("k3s-a").existing
    assert (ex.api_host, ex.api_port) == ("k3s.example.test", 7443)


@pytest.mark.parametrize("extra", ["current-context: " + "9" * 5000, "preferences: {when: 2001-13-45}"])
def test_kubeconfig_values_yaml_cannot_convert_are_config_errors(extra):
    assert "kindmesh:clusters[0].kubeconfig" in keys(E(kubeconfig=KUBECONFIG + extra + "\n"))
