"""The version catalogue: facts against ../shared, resolution, mixed meshes, kind node images."""

from __future__ import annotations

import copy
import io
import tarfile
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kindmesh.core import versions
from kindmesh.core.config import ConfigError, parse_config
from kindmesh.core.planner import load_plan
from kindmesh.core.render import cilium_values, kind_config
from kindmesh.core.versions import (
    CILIUM,
    CILIUM_IMAGE_PATHS,
    DEFAULT_CILIUM,
    DEFAULT_METALLB,
    KIND_NODE_IMAGES,
    METALLB,
    adapt_values,
    check_skew,
    kind_node_image,
    node_k8s_minor,
)
from tests.helpers import stack_raw, upstream
from tests.mocks import evaluate
from tests.upstream import schema_errors, unknown_key_paths

CILIUM_VERSIONS = [v for line in CILIUM.values() for v in line.validated]
METALLB_VERSIONS = [v for line in METALLB.values() for v in line.validated]


def dig(values: Any, path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def chart_yaml(name: str) -> dict[str, Any]:
    archive = upstream("charts", f"{name}.tgz")
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml"))
        data = tar.extractfile(member)
        assert data is not None
        return yaml.safe_load(io.TextIOWrapper(data).read())


def with_cilium(raw: dict[str, Any], **cilium: Any) -> dict[str, Any]:
    return dict(raw, cilium={**(raw.get("cilium") or {}), **cilium})


# ------------------------------------------------------------------ facts against ../shared
@pytest.mark.parametrize("version", CILIUM_VERSIONS)
def test_cilium_images_are_the_charts_own(version):
    values = yaml.safe_load(upstream(f"cilium-{version}", "values.yaml").read_text())
    images = versions.cilium_image_set(version)
    assert set(images) == set(CILIUM_IMAGE_PATHS)
    for key, path in CILIUM_IMAGE_PATHS.items():
        theirs = dig(values, path)
        digest = theirs["genericDigest"] if key == "operator" else theirs["digest"]
        repo = theirs["repository"] + ("-generic" if key == "operator" else "")
        assert (images[key].repository, images[key].tag, images[key].digest) == (repo, theirs["tag"], digest), key
    assert chart_yaml(f"cilium-{version}")["version"] == version


@pytest.mark.parametrize("version", METALLB_VERSIONS)
def test_metallb_images_are_the_charts_own(version):
    values = yaml.safe_load(upstream(f"metallb-{version}", "values.yaml").read_text())
    chart = chart_yaml(f"metallb-{version}")
    assert chart["version"] == version
    line = METALLB[versions.minor_of(version)]  # type: ignore[index]
    for key in ("controller", "speaker"):
        image = line.charts[version][key]
        assert image.repository == values[key]["image"]["repository"]
        assert values[key]["image"]["tag"] is None and image.tag == chart["appVersion"]  # tag = appVersion
        assert image.digest is None  # the chart publishes none: nothing invented here


def _leaves(values: Any, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(values, dict) and values:
        for key, value in values.items():
            out.update(_leaves(value, f"{path}.{key}" if path else str(key)))
    else:
        out[path] = values
    return out


# The subtrees kindmesh renders (render.cilium_values, existing_cilium_values, with_extras).
RENDERED = ("cluster.", "kubeProxyReplacement", "k8sService", "ipam.", "routingMode", "tunnelProtocol",
            "operator.replicas", "clustermesh.", "hubble.enabled", "hubble.tls.", "hubble.relay.enabled",
            "hubble.ui.enabled", "hubble.ui.service.", "hubble.metrics.enabled", "encryption.enabled",
            "encryption.type", "tls.ca.", "commonLabels")
IMAGE_LEAVES = ("repository", "tag", "digest", "useDigest", "override", "pullPolicy")


def test_declared_value_changes_are_exactly_the_charts_differences():
    old_minor, new_minor = sorted(CILIUM)[:2]
    old_v, new_v = CILIUM[old_minor].validated[0], CILIUM[new_minor].validated[0]
    old = _leaves(yaml.safe_load(upstream(f"cilium-{old_v}", "values.yaml").read_text()))
    new = _leaves(yaml.safe_load(upstream(f"cilium-{new_v}", "values.yaml").read_text()))

    def ours(path: str) -> bool:
        image = ".image." in f".{path}" and path.rsplit(".", 1)[-1] in IMAGE_LEAVES
        return path.startswith(RENDERED) and not image

    gone = {p for p in old if p not in new and ours(p)}
    came = {p for p in new if p not in old and ours(p)}
    line = CILIUM[new_minor]

    def covered(paths: set[str], declared: list[str]) -> set[str]:
        return {p for p in paths if not any(p == d or p.startswith(d + ".") for d in declared)}

    assert covered(gone, [m.old for m in line.moved] + [r.path for r in line.removed]) == set()
    assert covered(came, [m.new for m in line.moved if not m.new_before] + [a.path for a in line.added]) == set()
    for m in line.moved:  # each declared move is real
        assert m.old in old and m.new in new and (m.new in old) == m.new_before
    for r in line.removed:
        assert any(p == r.path or p.startswith(r.path + ".") for p in old) and r.path not in new
    for a in line.added:
        assert a.path not in old and any(p == a.path or p.startswith(a.path + ".") for p in new)


# ------------------------------------------------------------------ defaults and resolution
def test_defaults_are_the_current_releases():
    config = parse_config({"clusters": [{"name": "us", "id": 1}]})
    assert (config.cilium.version, config.metallb.version) == ("1.20.0", "0.16.1")
    assert (DEFAULT_CILIUM, DEFAULT_METALLB) == ("1.20.0", "0.16.1")


@pytest.mark.parametrize("key,section,bad", [
    ("kindmesh:cilium.version", "cilium", "1.18.4"),
    ("kindmesh:cilium.version", "cilium", "2.0.0"),
    ("kindmesh:metallb.version", "metallb", "0.14.9"),
])
def test_an_unsupported_minor_names_the_key_and_lists_the_supported(key, section, bad):
    with pytest.raises(ConfigError) as err:
        load_plan({"clusters": [{"name": "us", "id": 1}], section: {"version": bad}}, stack="dev")
    problems = [p for p in err.value.problems if p.key == key]
    assert len(problems) == 1
    lines = CILIUM if section == "cilium" else METALLB
    for version in (v for line in lines.values() for v in line.validated):
        assert version in problems[0].message
    assert bad in problems[0].message


def test_an_unsupported_cluster_version_names_its_own_key_with_all_other_problems():
    raw = {"clusters": [{"name": "us", "id": 1}, {"name": "eu", "id": 2, "cilium": {"version": "1.17.0"}}],
           "metallb": {"version": "9.9.9"}, "network": {"poolSize": 1}}
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    keys = {p.key for p in err.value.problems}
    assert {"kindmesh:clusters[1].cilium.version", "kindmesh:metallb.version", "kindmesh:network.poolSize"} <= keys


def test_a_newer_patch_is_accepted_with_a_warning_and_nothing_prepulled():
    plan = load_plan(with_cilium(stack_raw("dev"), version="1.20.3"), stack="dev")
    assert any("kindmesh:cilium.version" in w and "1.20.3" in w for w in plan.warnings)
    assert not any("quay.io/cilium/" in i for i in plan.images)  # digests unknown: the chart pulls
    values = cilium_values(plan, plan.clusters[0])
    assert "useDigest" not in values["image"]  # the chart's own digest references stay in force
    assert schema_errors(values, "cilium-1.20.0") == [] and unknown_key_paths(values, "cilium-1.20.0") == []
    mlb = load_plan(dict(stack_raw("dev"), metallb={"version": "0.16.2"}), stack="dev")
    assert any("kindmesh:metallb.version" in w for w in mlb.warnings)
    assert not any("metallb" in i for i in mlb.images)


def test_a_validated_version_warns_nothing_and_prepulls_by_digest():
    plan = load_plan(stack_raw("dev"), stack="dev")
    assert plan.warnings == ()
    agent = versions.cilium_image_set(DEFAULT_CILIUM)["agent"]
    assert agent.pinned in plan.images and "@sha256:" in agent.pinned


# ------------------------------------------------------------------ values per version
def test_moved_values_are_written_where_each_version_reads_them():
    old_style = {"clustermesh": {"apiserver": {"tls": {"server": {"extraDnsNames": ["a.example"]}}},
                                 "enableMCSAPISupport": True}}
    new = adapt_values(old_style, "1.20.0")
    assert new == {"clustermesh": {"apiserver": {"tls": {"auto": {"server": {"extraDnsNames": ["a.example"]}}}},
                                   "mcsapi": {"enabled": True}}}
    back = adapt_values(new, "1.19.6")  # mcsapi.enabled exists in 1.19: kept
    assert back == {"clustermesh": {"apiserver": {"tls": {"server": {"extraDnsNames": ["a.example"]}}},
                                    "mcsapi": {"enabled": True}}}
    assert adapt_values(old_style, "1.19.6") == old_style
    assert old_style["clustermesh"]["enableMCSAPISupport"] is True  # input untouched


@pytest.mark.parametrize("version", CILIUM_VERSIONS)
def test_stack_values_in_either_style_render_valid_values_for_each_version(version):
    extra = {"clustermesh": {"apiserver": {"tls": {"server": {"extraDnsNames": ["mesh.example"]}}}}}
    raw = with_cilium(stack_raw("dev"), version=version, values=extra)
    plan = load_plan(raw, stack="dev")
    values = cilium_values(plan, plan.clusters[0])
    assert schema_errors(values, f"cilium-{version}") == []
    assert unknown_key_paths(values, f"cilium-{version}") == []
    names = [dig(values, p) for p in ("clustermesh.apiserver.tls.server.extraDnsNames",
                                      "clustermesh.apiserver.tls.auto.server.extraDnsNames")
             if _has(values, p)]
    assert names == [["mesh.example"]]


def _has(values: Any, path: str) -> bool:
    try:
        dig(values, path)
    except (KeyError, TypeError):
        return False
    return True


def test_a_value_a_version_lacks_is_refused_naming_the_key():
    raw = with_cilium(stack_raw("dev"), version="1.19.6",
                      values={"clustermesh": {"defaultGlobalNamespace": False}})
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    assert [p.key for p in err.value.problems] == ["kindmesh:cilium.values.clustermesh.defaultGlobalNamespace"]
    assert "added in 1.20" in err.value.problems[0].message
    raw = with_cilium(stack_raw("dev"), values={"clustermesh": {"apiserver": {"tls": {"server": {"cert": "x"}}}}})
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    assert err.value.problems[0].key == "kindmesh:cilium.values.clustermesh.apiserver.tls.server.cert"
    assert "removed in 1.20" in err.value.problems[0].message


# ------------------------------------------------------------------ per-cluster versions
def mixed(old: str = "1.19.6", new: str = "1.20.0") -> dict[str, Any]:
    raw = copy.deepcopy(stack_raw("dev"))
    raw = with_cilium(raw, version=old)
    raw["clusters"][0]["cilium"] = {**(raw["clusters"][0].get("cilium") or {}), "version": new}
    return raw


def test_a_mesh_of_two_minors_is_valid_and_each_cluster_renders_its_own_version():
    rec = evaluate(mixed(), "dev")
    first, second = rec.plan.clusters[0], rec.plan.clusters[1]
    assert (first.cilium_version, second.cilium_version) == ("1.20.0", "1.19.6")
    for c in (first, second):
        release = rec.named(f"{c.name}-cilium")
        assert release.inputs["version"] == c.cilium_version
        chart = f"cilium-{c.cilium_version}"
        assert schema_errors(release.inputs["values"], chart) == []
        assert unknown_key_paths(release.inputs["values"], chart) == []
        # the cluster's images are loaded by its own step (after its cluster and the host's pull)
        spec = yaml.safe_load(rec.named(f"{c.name}-image-load").inputs["environment"]["KINDMESH_KIND_SPEC"])
        tags = {i["tag"] for i in spec["images"]}
        other = second if c is first else first
        assert f"quay.io/cilium/cilium:v{c.cilium_version}" in tags
        assert f"quay.io/cilium/cilium:v{other.cilium_version}" not in tags  # only its own version loaded
    host = rec.plan.images  # the host pulls both sets
    assert {f"quay.io/cilium/cilium:v{v}" for v in ("1.19.6", "1.20.0")} <= {i.split("@")[0] for i in host}


def test_all_clusters_overridden_equals_the_stack_holding_the_version_once():
    """The staged upgrade's last rewrite (one stack-level version, overrides removed) changes nothing."""
    per_cluster = copy.deepcopy(stack_raw("dev"))
    per_cluster = with_cilium(per_cluster, version="1.19.6")
    for c in per_cluster["clusters"]:
        c["cilium"] = {**(c.get("cilium") or {}), "version": "1.20.0"}
    once = with_cilium(copy.deepcopy(stack_raw("dev")), version="1.20.0")
    a, b = evaluate(per_cluster, "dev"), evaluate(once, "dev")
    key = lambda r: (r.type, r.name)  # noqa: E731 - registration order is not deterministic
    ra_all, rb_all = sorted(a.resources, key=key), sorted(b.resources, key=key)
    assert [key(r) for r in ra_all] == [key(r) for r in rb_all]
    for ra, rb in zip(ra_all, rb_all, strict=True):
        assert ra.inputs == rb.inputs, ra.name


def test_skew_of_more_than_one_minor_is_refused_naming_the_keys(monkeypatch):
    future = versions.ChartLine(minor=(1, 21), charts={"1.21.0": {}}, k8s_window=((1, 34), (1, 37)), k8s_source="test")
    monkeypatch.setitem(versions.CILIUM, (1, 21), future)
    with pytest.raises(ConfigError) as err:
        load_plan(mixed("1.19.6", "1.21.0"), stack="dev")
    (problem,) = err.value.problems
    assert "kindmesh:clusters[0].cilium.version" in problem.message and "kindmesh:cilium.version" in problem.message
    assert "more than 1 minor" in problem.message
    load_plan(mixed("1.20.0", "1.21.0"), stack="dev")  # one minor apart: fine


MINORS = st.tuples(st.integers(0, 3), st.integers(0, 40))


@settings(max_examples=300, deadline=None)
@given(st.lists(MINORS, min_size=1, max_size=12), st.integers(0, 3))
def test_skew_rule_property(minors, patch):
    named = [(f"kindmesh:clusters[{i}].cilium.version", f"{a}.{b}.{patch}") for i, (a, b) in enumerate(minors)]
    problem = check_skew(named)
    ok = len({a for a, _ in minors}) == 1 and max(b for _, b in minors) - min(b for _, b in minors) <= 1
    assert (problem is None) == ok
    if problem is not None:  # names the clusters at both ends
        low, high = min(minors), max(minors)
        assert f"{low[0]}.{low[1]}.{patch}" in problem and f"{high[0]}.{high[1]}.{patch}" in problem
    assert check_skew(list(reversed(named))) is None if ok else check_skew(list(reversed(named))) is not None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(CILIUM_VERSIONS + ["1.20.4", "1.19.9"]), min_size=2, max_size=5))
def test_any_mix_of_supported_versions_plans_and_every_cluster_keeps_its_own(picks):
    raw = {"clusters": [{"name": f"c{i}", "id": i + 1, "workers": 0, "cilium": {"version": v}}
                        for i, v in enumerate(picks)], "network": {"subnet": "172.30.0.0/16"}}
    plan = load_plan(raw, stack="prop")
    assert [c.cilium_version for c in plan.clusters] == picks
    assert plan == load_plan(raw, stack="prop")


# ------------------------------------------------------------------ kind node images
@pytest.mark.parametrize("release,tag", [((0, 30, 0), "v1.34.0"), ((0, 31, 0), "v1.35.0"), ((0, 32, 0), "v1.36.1"),
                                         ((0, 33, 0), "v1.37.0"), ((0, 31, 1), "v1.35.0")])
def test_node_image_follows_the_installed_kind(release, tag):
    plan = load_plan(stack_raw("dev"), stack="dev", kind_version=release)
    assert plan.node_image.split("@")[0] == f"kindest/node:{tag}"
    assert {n["image"] for n in kind_config(plan, plan.clusters[0])["nodes"]} == {plan.node_image}
    assert plan == load_plan(stack_raw("dev"), stack="dev", kind_version=release)  # deterministic


def test_only_known_digests_are_pinned():
    assert "@sha256:" not in KIND_NODE_IMAGES[(0, 33, 0)]  # no digest known as a fact: tag only
    assert all("@sha256:" in KIND_NODE_IMAGES[r] for r in ((0, 30, 0), (0, 31, 0), (0, 32, 0)))


def test_a_newer_kind_gets_the_newest_known_image_and_a_warning():
    image, warning = kind_node_image((0, 40, 0))
    assert image == KIND_NODE_IMAGES[versions.NEWEST_KIND]
    assert warning and "v0.40.0" in warning and "kindmesh:kind.nodeImage" in warning
    plan = load_plan(stack_raw("dev"), stack="dev", kind_version=(0, 40, 0))
    assert warning in plan.warnings


def test_a_node_image_the_user_set_stays_as_set():
    mine = "kindest/node:v1.34.0@sha256:" + "b" * 64
    raw = dict(stack_raw("dev"), kind={"nodeImage": mine})
    for release in ((0, 30, 0), (0, 33, 0), None):
        assert load_plan(raw, stack="dev", kind_version=release).node_image == mine


def test_a_node_image_older_than_a_clusters_cilium_window_is_refused():
    raw = mixed("1.19.6", "1.20.0")
    raw["kind"] = {"nodeImage": "kindest/node:v1.32.2@sha256:" + "c" * 64}  # in 1.19's window, not 1.20's
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    (problem,) = err.value.problems
    assert problem.key == "kindmesh:kind.nodeImage" and "1.33-1.36" in problem.message
    assert "kindmesh:clusters[0].cilium.version" in problem.message
    raw["clusters"][0]["cilium"]["version"] = "1.19.6"
    load_plan(raw, stack="dev")


def test_a_node_image_newer_than_the_window_is_a_warning():
    plan = load_plan(with_cilium(stack_raw("dev"), version="1.19.6"), stack="dev", kind_version=(0, 32, 0))
    assert any("Kubernetes 1.36" in w and "1.32-1.35" in w for w in plan.warnings)
    assert node_k8s_minor("kindest/node:v1.36.1@sha256:" + "0" * 64) == (1, 36)
    assert node_k8s_minor("kindest/node") is None


# ------------------------------------------------------------------ MetalLB in place
def test_metallb_minor_change_updates_the_release_in_place():
    old = evaluate(dict(stack_raw("dev"), metallb={"version": "0.15.3"}), "dev")
    new = evaluate(dict(stack_raw("dev"), metallb={"version": "0.16.1"}), "dev")
    assert sorted(r.urn for r in old.resources) == sorted(r.urn for r in new.resources)  # nothing renamed
    for c in old.plan.clusters:
        a, b = old.named(f"{c.name}-metallb"), new.named(f"{c.name}-metallb")
        changed = {k for k in set(a.inputs) | set(b.inputs) if a.inputs.get(k) != b.inputs.get(k)}
        assert changed == {"version"}
        assert not b.replace_on_changes and not b.delete_before_replace  # a helm upgrade, not a replace
        for version, rec in (("0.15.3", old), ("0.16.1", new)):
            values = rec.named(f"{c.name}-metallb").inputs["values"]
            assert schema_errors(values, f"metallb-{version}") == []
            assert unknown_key_paths(values, f"metallb-{version}") == []
        gate_a, gate_b = old.named(f"{c.name}-metallb-webhook"), new.named(f"{c.name}-metallb-webhook")
        rerun = "KINDMESH_GATE_RERUN"  # the webhook is probed again (an update of the gate)
        assert gate_a.inputs["environment"][rerun] != gate_b.inputs["environment"][rerun]
        assert not gate_b.inputs.get("triggers")  # pulumi-command replaces on triggers: none used
        assert old.named(f"{c.name}-pool").inputs == new.named(f"{c.name}-pool").inputs


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from([19, 20, 21, 22]), min_size=1, max_size=6), st.booleans())
def test_planner_accepts_a_mesh_iff_its_minors_are_at_most_one_apart(minors, stack_level):
    """Property of the planner over a catalogue with four minors (two of them made up here)."""
    from unittest import mock

    wide = dict(CILIUM)
    for m in (21, 22):
        wide[(1, m)] = versions.ChartLine(minor=(1, m), charts={f"1.{m}.0": {}}, k8s_window=((1, 30), (1, 40)),
                                          k8s_source="test")
    wide[(1, 19)] = versions.ChartLine(minor=(1, 19), charts=CILIUM[(1, 19)].charts,
                                       k8s_window=((1, 30), (1, 40)), k8s_source="test")
    wide[(1, 20)] = versions.ChartLine(minor=(1, 20), charts=CILIUM[(1, 20)].charts,
                                       k8s_window=((1, 30), (1, 40)), k8s_source="test",
                                       moved=CILIUM[(1, 20)].moved, removed=CILIUM[(1, 20)].removed,
                                       added=CILIUM[(1, 20)].added)
    chart = {19: "1.19.6", 20: "1.20.0", 21: "1.21.0", 22: "1.22.0"}
    clusters = [{"name": f"c{i}", "id": i + 1, "workers": 0} for i in range(len(minors))]
    raw: dict[str, Any] = {"clusters": clusters, "network": {"subnet": "172.30.0.0/16"}}
    if stack_level:  # the first cluster takes the stack's version, the others their own
        raw["cilium"] = {"version": chart[minors[0]]}
    for i, c in enumerate(clusters):
        if i or not stack_level:
            c["cilium"] = {"version": chart[minors[i]]}
    with mock.patch.dict(versions.CILIUM, wide, clear=True):
        ok = max(minors) - min(minors) <= 1
        try:
            plan = load_plan(raw, stack="prop")
        except ConfigError as err:
            assert not ok
            (problem,) = err.problems
            assert "more than 1 minor" in problem.message
            return
        assert ok and [c.cilium_version for c in plan.clusters] == [chart[m] for m in minors]


def test_a_local_chart_directory_must_hold_every_clusters_version(tmp_path):
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "cilium-1.19.6.tgz").write_bytes(b"x")
    raw = mixed("1.19.6", "1.20.0")
    raw["charts"] = {"cilium": str(charts)}
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    (problem,) = err.value.problems
    assert problem.key == "kindmesh:clusters[0].cilium.version" and "cilium-1.20.0.tgz" in problem.message
    (charts / "cilium-1.20.0.tgz").write_bytes(b"x")
    load_plan(raw, stack="dev")


def test_the_clusters_output_names_each_clusters_cilium_version():
    rec = evaluate(mixed(), "dev")
    rows = {row["name"]: row["ciliumVersion"] for row in rec.stack_outputs["clusters"]}
    assert rows == {"us": "1.20.0", "eu": "1.19.6"}


def test_a_value_added_in_1_20_is_accepted_on_a_1_20_cluster():
    """The boundary of ``Added``: refused before its minor (tested above), accepted from it on."""
    added = {"clustermesh": {"defaultGlobalNamespace": True}}
    assert versions.value_problems(added, "1.20.0") == []
    assert versions.value_problems(added, "1.19.6") != []
    plan = load_plan({"clusters": [{"name": "a", "id": 1, "cilium": {"version": "1.20.0", "values": added}}]},
                     stack="dev")
    (cluster,) = plan.clusters
    assert cluster.cilium_version == "1.20.0"
    assert cilium_values(plan, cluster)["clustermesh"]["defaultGlobalNamespace"] is True
