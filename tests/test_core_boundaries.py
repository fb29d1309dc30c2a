"""Boundaries of the core that `make mutation` showed unpinned: message bounds, the plan()
entry point, a kind pool's edges, existing clusters' Hubble UI service, and extra values."""

from __future__ import annotations

import copy
import dataclasses
from unittest import mock

import pytest

from kindmesh.core import versions
from kindmesh.core.config import parse_config
from kindmesh.core.model import LINE_MAX, PROBLEMS_SHOWN, ConfigError, Problem, clip
from kindmesh.core.planner import PoolOverlapError, check_pool_is_own, load_plan, plan
from kindmesh.core.render import cilium_values
from kindmesh.core.render_existing import merge_values
from tests.golden import fake_kubeconfig

TWO = {"clusters": [{"name": "us", "id": 1}, {"name": "eu", "id": 2}], "network": {"subnet": "172.30.0.0/24",
                                                                                    "poolSize": 8}}


# ------------------------------------------------------------------ messages stay bounded, and say what they cut
def test_clip_keeps_text_of_exactly_the_limit_and_cuts_longer_text_to_the_limit():
    assert clip("abcde", 5) == "abcde"
    assert clip("abcdef", 5) == "abcd…"
    assert len(clip("x" * 500)) == 60


def test_a_config_error_lists_every_problem_up_to_the_cap_and_counts_the_rest():
    at_cap = str(ConfigError([Problem(f"k{i}", "bad") for i in range(PROBLEMS_SHOWN)]))
    assert at_cap.count("\n  - ") == PROBLEMS_SHOWN and "more problem(s)" not in at_cap
    over = ConfigError([Problem(f"k{i}", "bad") for i in range(PROBLEMS_SHOWN + 1)])
    text = str(over)
    assert text.endswith("\n  … and 1 more problem(s) not shown; fix these and run again")
    assert text.startswith(f"kindmesh configuration has {PROBLEMS_SHOWN + 1} problem(s):\n")
    long = str(ConfigError([Problem("key", "x" * 1000)]))
    assert max(len(line) for line in long.splitlines()) == LINE_MAX


# ------------------------------------------------------------------ plan(): the entry point for a parsed config
def test_plan_of_a_parsed_config_keeps_the_project_and_the_kind_release():
    config = parse_config(TWO)
    default = plan(config, stack="dev")
    assert default.project == "kindmesh" and default.kind_version is None
    other = plan(config, stack="dev", project="lab", kind_version=(0, 31, 0))
    assert other.project == "lab" and other.stack_label == "lab.dev"
    assert other.kind_version == (0, 31, 0) and other.node_image == versions.KIND_NODE_IMAGES[(0, 31, 0)]
    assert other == load_plan(TWO, stack="dev", project="lab", kind_version=(0, 31, 0))


# ------------------------------------------------------------------ a kind cluster's pool lies strictly inside the subnet
@pytest.mark.parametrize(("first", "last", "inside"), [
    ("172.30.0.0", "172.30.0.9", False),  # the network address
    ("172.30.0.1", "172.30.0.1", True),  # a pool of one address
    ("172.30.0.240", "172.30.0.254", True),  # up to the address below the broadcast
    ("172.30.0.240", "172.30.0.255", False),  # the broadcast address
])
def test_a_kind_pool_must_lie_strictly_between_network_and_broadcast(first, last, inside):
    p = load_plan(TWO, stack="dev")
    us = dataclasses.replace(p.cluster("us"), pool_first=first, pool_last=last)
    eu = dataclasses.replace(p.cluster("eu"), pool_first="172.30.0.100", pool_last="172.30.0.101")
    moved = dataclasses.replace(p, clusters=(us, eu))
    if inside:
        check_pool_is_own(moved, us)
    else:
        with pytest.raises(PoolOverlapError, match="is not inside the docker subnet"):
            check_pool_is_own(moved, us)


# ------------------------------------------------------------------ existing clusters
def _existing(endpoint: dict, hubble_ui: bool = True, cid: int = 7, index_first: bool = True) -> dict:
    existing = {"name": "far", "id": cid, "source": "existing",
                "kubeconfig": fake_kubeconfig("https://192.0.2.7:6443", "t"),
                "podSubnet": "10.70.0.0/16", "serviceSubnet": "10.170.0.0/16", "meshEndpoint": endpoint}
    other = {"name": "near", "id": 3, "source": "existing", "kubeconfig": fake_kubeconfig("https://192.0.2.3:6443", "u"),
             "podSubnet": "10.30.0.0/16", "serviceSubnet": "10.130.0.0/16",
             "meshEndpoint": {"nodePort": 32380, "nodeIPs": ["192.0.2.3"]}}
    clusters = [existing, other] if index_first else [other, existing]
    return {"clusters": clusters, "cilium": {"hubbleUi": hubble_ui}}


def test_an_existing_clusters_hubble_ui_without_a_pool_of_ours_is_a_cluster_ip_service():
    p = load_plan(_existing({"nodePort": 32379, "nodeIPs": ["192.0.2.7"]}), stack="dev")
    far = p.cluster("far")
    assert far.hubble_ui_ip is None
    assert cilium_values(p, far)["hubble"]["ui"]["service"] == {"type": "ClusterIP"}
    p_ip = load_plan(_existing({"loadBalancer": {"ip": "192.0.2.200"}}), stack="dev")
    assert cilium_values(p_ip, p_ip.cluster("far"))["hubble"]["ui"]["service"] == {"type": "LoadBalancer"}


def test_an_existing_cluster_keeps_its_own_id_wherever_it_is_listed():
    for cid in (1, 7, 255):
        for first in (True, False):
            p = load_plan(_existing({"nodePort": 32379, "nodeIPs": ["192.0.2.7"]}, cid=cid, index_first=first),
                          stack="dev")
            assert p.cluster("far").id == cid
            assert cilium_values(p, p.cluster("far"))["cluster"] == {"name": "far", "id": cid}


# ------------------------------------------------------------------ extra values
def test_merged_extra_values_never_share_objects_with_the_config():
    extra = {"tolerations": [{"operator": "Exists"}], "operator": {"replicas": 2}}
    merged = merge_values({"operator": {"replicas": 1, "image": {}}}, extra)
    merged["tolerations"].append({"key": "x"})
    merged["tolerations"][0]["operator"] = "Equal"
    assert extra == {"tolerations": [{"operator": "Exists"}], "operator": {"replicas": 2}}
    assert merged["operator"] == {"replicas": 2, "image": {}}


def test_a_moved_path_never_overwrites_the_new_path_even_when_its_value_is_empty():
    old = "clustermesh.apiserver.tls.server.extraDnsNames"
    values = {"clustermesh": {"apiserver": {"tls": {"server": {"extraDnsNames": ["a.example"]},
                                                    "auto": {"server": {"extraDnsNames": []}}}}}}
    assert versions.adapt_values(values, "1.20.0") == values  # both set: left for value_problems to refuse
    assert any(path == old for path, _ in versions.value_problems(values, "1.20.0"))


def test_every_moved_path_of_a_line_is_adapted_after_one_that_already_existed():
    """A move whose new path exists before it (``new_before``) is skipped for older clusters; the
    moves listed after it still apply."""
    line = versions.CILIUM[(1, 20)]
    first, *rest = [m for m in line.moved if not m.new_before]
    reordered = dataclasses.replace(line, moved=(*[m for m in line.moved if m.new_before], first, *rest))
    values: dict = {}
    for i, m in enumerate((first, *rest)):
        versions._put(values, m.new, [f"x{i}"])
    with mock.patch.dict(versions.CILIUM, {(1, 20): reordered}):
        adapted = versions.adapt_values(copy.deepcopy(values), "1.19.6")
    for i, m in enumerate((first, *rest)):
        assert versions._get(adapted, m.old) == (True, [f"x{i}"]) and not versions._get(adapted, m.new)[0], m


@pytest.mark.parametrize(("eu_first", "eu_last", "overlap"), [
    ("172.30.0.20", "172.30.0.30", True),  # shares the last address of us's pool
    ("172.30.0.21", "172.30.0.30", False),  # right after it
    ("172.30.0.1", "172.30.0.10", True),  # shares the first address
    ("172.30.0.1", "172.30.0.9", False),  # right before it
])
def test_two_pools_sharing_one_address_overlap(eu_first, eu_last, overlap):
    p = load_plan(TWO, stack="dev")
    us = dataclasses.replace(p.cluster("us"), pool_first="172.30.0.10", pool_last="172.30.0.20")
    eu = dataclasses.replace(p.cluster("eu"), pool_first=eu_first, pool_last=eu_last)
    pair = dataclasses.replace(p, clusters=(us, eu))
    if overlap:
        with pytest.raises(PoolOverlapError, match="overlaps pool"):
            check_pool_is_own(pair, us)
    else:
        check_pool_is_own(pair, us)


def test_a_slug_never_starts_or_ends_with_a_dash():
    from kindmesh.core.model import slug, stack_slug

    assert slug("__Team_A__") == "team-a" and slug("-a-") == "a" and slug("___") == ""
    assert stack_slug("_dev_").startswith("dev--")


def test_a_long_project_name_fills_the_stack_label_to_exactly_63_characters():
    from kindmesh.core.model import LABEL_MAX, digest, stack_label

    project = "p" * 60  # clean, but longer than the room left by ".dev": hashed to fit
    label = stack_label(project, "dev")
    assert len(label) == LABEL_MAX
    assert label == f"{'p' * (LABEL_MAX - len('.dev') - 10)}--{digest(project)}.dev"
    assert stack_label("kindmesh", "dev") == "kindmesh.dev"


@pytest.mark.parametrize("project", ["kindmesh", "p" * 60, "Team_Project." * 9, "x"])
@pytest.mark.parametrize("stack", ["dev", "s" * 40, "s" * 41, "Team_A." * 12, "-"])
def test_every_stack_label_fits_a_label_value(project, stack):
    from kindmesh.core.model import LABEL_MAX, stack_label

    label = stack_label(project, stack)
    assert len(label) <= LABEL_MAX and label.count(".") >= 1
    assert not label.startswith(("-", ".")) and not label.endswith(("-", "."))


def test_asking_a_plan_for_an_unknown_cluster_names_it():
    with pytest.raises(KeyError, match="nope"):
        load_plan(TWO, stack="dev").cluster("nope")


def test_the_kubernetes_version_of_a_node_image_from_a_registry_with_a_port():
    assert versions.node_k8s_minor("registry.local:5000/kindest/node:v1.35.0") == (1, 35)
    assert versions.node_k8s_minor("registry.local:5000/kindest/node:v1.35.0@sha256:" + "0" * 64) == (1, 35)
    assert versions.node_k8s_minor("registry.local:5000/kindest/node") is None  # no tag: cannot tell


def test_node_image_tags_with_and_without_a_v_and_images_without_a_version():
    assert versions.node_k8s_minor("kindest/node:1.35.0") == (1, 35)
    assert versions.node_k8s_minor("kindest/node:latest") is None
    assert versions.node_k8s_minor("v1.35.0") is None  # a name, no tag


def test_the_newest_known_kind_release_gets_its_own_image_without_a_warning():
    assert versions.kind_node_image(versions.NEWEST_KIND) == (versions.KIND_NODE_IMAGES[versions.NEWEST_KIND], None)


OLD_NODE = "kindest/node:v1.30.0@sha256:" + "1" * 64


def test_an_old_node_image_is_reported_once_per_cilium_minor_of_the_kind_clusters():
    raw = {"clusters": [{"name": "a", "id": 1, "cilium": {"version": "1.20.0"}},
                        {"name": "b", "id": 2, "cilium": {"version": "1.20.0"}},
                        {"name": "c", "id": 3, "cilium": {"version": "1.19.6"}}],
           "kind": {"nodeImage": OLD_NODE}}
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    found = [p.message for p in err.value.problems if p.key == "kindmesh:kind.nodeImage"]
    assert len(found) == 2
    assert "older than Cilium 1.20 supports" in found[0] and "older than Cilium 1.19 supports" in found[1]


def test_a_node_image_of_unknown_kubernetes_version_is_a_warning():
    image = "kindest/node@sha256:" + "2" * 64
    p = load_plan({"clusters": [{"name": "a", "id": 1}], "kind": {"nodeImage": image}}, stack="dev")
    assert (f"cannot tell the Kubernetes version of node image {image}; not checked against Cilium's tested "
            "Kubernetes versions") in p.warnings


def test_a_kind_newer_than_known_gets_the_newest_image_and_the_whole_way_to_its_own():
    image, warning = versions.kind_node_image((0, 99, 0))
    newest = versions.fmt_release(versions.NEWEST_KIND)
    assert image == versions.KIND_NODE_IMAGES[versions.NEWEST_KIND]
    assert warning == (f"kind v0.99.0 is newer than kindmesh knows ({newest}); using {newest}'s node image {image}. "
                       "For v0.99.0's own image set kindmesh:kind.nodeImage (pinned by digest, from its release notes)")


def test_a_kind_release_between_known_ones_gets_the_image_of_the_newest_before_it():
    images = versions.KIND_NODE_IMAGES
    assert versions.kind_node_image((0, 31, 1)) == (images[(0, 31, 0)], None)
    assert versions.kind_node_image((0, 32, 9)) == (images[(0, 32, 0)], None)
    assert versions.kind_node_image(versions.MIN_KIND) == (images[versions.MIN_KIND], None)
    assert versions.kind_node_image((0, 29, 9)) == (images[versions.MIN_KIND], None)  # the preflight refuses it
