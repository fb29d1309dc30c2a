"""KindCluster: rendered kind configs and the component under Pulumi mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kindmesh.core.planner import load_plan
from kindmesh.core.render import kind_config, kind_config_yaml
from kindmesh.core.versions import DEFAULT_CILIUM
from kindmesh.deploy import kindctl
from tests.helpers import STACKS, stack_raw
from tests.mocks import DYNAMIC, evaluate

# Fields of kind's v1alpha4 API (kind decodes strictly: any other key fails).
CLUSTER_KEYS = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
                "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches",
                "containerdConfigPatchesJSON6902"}
NETWORKING_KEYS = {"ipFamily", "apiServerPort", "apiServerAddress", "podSubnet", "serviceSubnet",
                   "disableDefaultCNI", "kubeProxyMode", "dnsSearch"}
NODE_KEYS = {"role", "image", "labels", "extraMounts", "extraPortMappings", "kubeadmConfigPatches",
             "kubeadmConfigPatchesJSON6902"}


@pytest.mark.parametrize("stack", STACKS)
def test_kind_configs_use_only_v1alpha4_keys(stack):
    plan = load_plan(stack_raw(stack), stack=stack)
    for c in plan.clusters:
        cfg = yaml.safe_load(kind_config_yaml(plan, c))
        assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["kind"] == "Cluster"
        assert set(cfg) <= CLUSTER_KEYS
        assert set(cfg["networking"]) <= NETWORKING_KEYS
        for node in cfg["nodes"]:
            assert set(node) <= NODE_KEYS
        net = cfg["networking"]
        assert net["disableDefaultCNI"] is True and net["kubeProxyMode"] == "none"
        assert (net["podSubnet"], net["serviceSubnet"]) == (c.pod_subnet, c.service_subnet)
        roles = [n["role"] for n in cfg["nodes"]]
        assert roles == ["control-plane"] + ["worker"] * c.workers
        assert all("@sha256:" in n["image"] for n in cfg["nodes"])
        assert cfg["name"] == c.kind_name


def test_dev_kind_configs_are_byte_stable():
    a = load_plan(stack_raw("dev"), stack="dev")
    b = load_plan(stack_raw("dev"), stack="dev")
    for ca, cb in zip(a.clusters, b.clusters, strict=True):
        assert kind_config_yaml(a, ca) == kind_config_yaml(b, cb)
    assert kind_config(a, a.clusters[0]) != kind_config(a, a.clusters[1])


@pytest.fixture(scope="module")
def dev():
    return evaluate(stack_raw("dev"), "dev")


COMMAND = "command:local:Command"


def test_kind_cluster_is_a_command_in_its_own_process_plus_a_quick_reader(dev):
    cmd = dev.named("us-kind-cluster")
    assert cmd.type == COMMAND
    assert cmd.inputs["create"].endswith(" -m kindmesh.deploy.kindctl create")
    assert cmd.inputs["update"].endswith(" -m kindmesh.deploy.kindctl update")
    assert cmd.inputs["delete"].endswith(" -m kindmesh.deploy.kindctl delete")
    assert (Path(cmd.inputs["dir"]) / "kindmesh" / "deploy" / "kindctl.py").is_file()
    spec = json.loads(cmd.inputs["environment"]["KINDMESH_KIND_SPEC"])
    assert spec["name"] == "km-dev-us" and spec["network"] == "kindmesh-dev"
    assert spec["pod_subnet"] == "10.1.0.0/17"
    assert yaml.safe_load(spec["config"])["networking"]["podSubnet"] == "10.1.0.0/17"
    assert "images" not in spec  # loaded by a step of their own, after the pull
    assert cmd.inputs["triggers"] == [kindctl.spec_hash(spec)]
    assert cmd.delete_before_replace
    assert not cmd.secret_inputs  # the spec holds no secret; stdout never carries the kubeconfig

    us = dev.named("us-kind")
    assert us.type == DYNAMIC
    assert us.inputs["name"] == "km-dev-us" and us.inputs["network"] == "kindmesh-dev"
    assert cmd.urn in us.dependencies
    assert "kubeconfig" in us.additional_secret_outputs
    assert dev.by_urn(us.parent).type == "kindmesh:index:KindCluster"
    assert dev.by_urn(cmd.parent).type == "kindmesh:index:KindCluster"
    assert dev.outputs["kubeconfigs"]["us"].startswith("apiVersion: v1")


def test_host_images_are_pulled_once_by_their_own_command(dev):
    pull = dev.named("host-images-pull")
    assert pull.type == COMMAND and pull.inputs["create"].endswith(" -m kindmesh.deploy.kindctl prepull")
    images = json.loads(pull.inputs["environment"]["KINDMESH_IMAGES_SPEC"])["images"]
    assert len(images) == len({i["pinned"] for i in images}) == len(dev.plan.images)
    for c in ("us", "eu"):
        # kind create runs while the images are pulled; the load waits for both
        cluster = dev.named(f"{c}-kind-cluster")
        assert not dev.depends_on(cluster, pull)
        load = dev.named(f"{c}-image-load")
        assert dev.depends_on(load, pull) and cluster.urn in load.dependencies
        assert not dev.depends_on(load, dev.named(f"{c}-kind"))  # nor on the quick reader


def test_each_cluster_loads_the_images_in_a_step_of_its_own(dev):
    for c in dev.plan.clusters:
        load = dev.named(f"{c.name}-image-load")
        cluster = dev.named(f"{c.name}-kind-cluster")
        assert load.type == COMMAND and dev.by_urn(load.parent).type == "kindmesh:index:KindCluster"
        assert load.inputs["create"].endswith(" -m kindmesh.deploy.kindctl load")
        assert load.inputs["update"] == load.inputs["create"]  # new images: load what is missing
        assert "delete" not in load.inputs  # the cluster's deletion takes its images
        env = load.inputs["environment"]
        spec = json.loads(env["KINDMESH_KIND_SPEC"])
        assert (spec["name"], spec["network"]) == (c.kind_name, dev.plan.network.name)
        assert [i["pinned"] for i in spec["images"]] == list(dev.plan.images_for(c))
        assert f"quay.io/cilium/cilium:v{DEFAULT_CILIUM}" in {i["tag"] for i in spec["images"]}
        # a new cluster (its create command gets a new id) changes the environment: an update,
        # which loads what the new cluster lacks; never `triggers` (a replace in pulumi-command 1.2.1)
        instance = json.loads(env[kindctl.CLUSTER_ID_ENV])
        assert instance["id"] == f"{cluster.name}-id"  # the mocks' id (a real create: a random suffix)
        assert "run" in instance  # and what its create/update did (its stdout)
        assert "triggers" not in load.inputs
        assert not load.secret_inputs
        # every chart of the cluster waits for the load
        for chart in ("cilium", "metallb"):
            assert load.urn in dev.named(f"{c.name}-{chart}").dependencies


def test_adding_a_cluster_changes_no_other_clusters_load():
    raw = stack_raw("dev")
    before = evaluate(raw, "dev")
    after = evaluate(dict(raw, clusters=raw["clusters"] + [{"name": "ap", "id": 3, "workers": 0}]), "dev")
    for c in before.plan.clusters:
        a, b = before.named(f"{c.name}-image-load"), after.named(f"{c.name}-image-load")
        assert (a.inputs, set(a.dependencies)) == (b.inputs, set(b.dependencies))


def test_without_prepull_nothing_is_loaded_and_the_charts_wait_for_the_cluster():
    rec = evaluate(dict(stack_raw("dev"), kind={"prePull": False}), "dev")
    assert not [r for r in rec.resources if r.name.endswith(("-image-load", "host-images-pull"))]
    for c in rec.plan.clusters:
        assert rec.named(f"{c.name}-kind").urn in rec.named(f"{c.name}-cilium").dependencies


def test_kubeconfig_is_secret_everywhere_it_flows(dev):
    for name in ("us-k8s", "eu-k8s"):
        assert "kubeconfig" in dev.named(name).secret_inputs
    for r in dev.resources:
        if r.type == DYNAMIC and "kubeconfig" in r.inputs:
            assert "kubeconfig" in r.secret_inputs, r.name
    assert "kubeconfigs" in dev.secret_stack_outputs


def test_network_is_created_before_clusters_with_explicit_docker_provider(dev):
    net = dev.named("network")
    provider = dev.named("docker")
    assert provider.type == "pulumi:providers:docker"
    assert net.provider.startswith(provider.urn)
    assert net.inputs["name"] == "kindmesh-dev"
    ipam = net.inputs["ipamConfigs"][0]
    assert ipam == {"subnet": "172.30.0.0/16", "gateway": "172.30.0.1", "ipRange": "172.30.0.0/17"}
    assert {"label": "kindmesh.io/stack", "value": "kindmesh.dev"} in net.inputs["labels"]
    # under mocks the host is not asked for its MTU: no MTU option; the flags Docker reports, asked for
    assert net.inputs["options"] == {"com.docker.network.bridge.enable_ip_masquerade": "true",
                                     "com.docker.network.enable_ipv4": "true",
                                     "com.docker.network.enable_ipv6": "false"}
    for c in ("us-kind-cluster", "eu-kind-cluster"):
        assert net.urn in dev.named(c).dependencies


def test_clusters_do_not_depend_on_each_other(dev):
    us, eu = dev.named("us-kind"), dev.named("eu-kind")
    assert not dev.depends_on(us, eu) and not dev.depends_on(eu, us)


def test_immutable_changes_replace_the_cluster_delete_first(monkeypatch):
    """pulumi-command runs `update` (not a replace) when triggers change and an update command
    exists, so the replacement is forced by the engine: replaceOnChanges + deleteBeforeReplace."""
    import tests.mocks as mocks

    seen: dict[str, list[str]] = {}

    class Recorder(mocks.Recorder):
        def RegisterResource(self, request):  # noqa: N802 - gRPC method name
            seen[request.name] = list(request.replaceOnChanges)
            return super().RegisterResource(request)

    monkeypatch.setattr(mocks, "Recorder", Recorder)
    rec = mocks.evaluate(stack_raw("dev"), "dev")
    for c in rec.plan.clusters:
        cmd = rec.named(f"{c.name}-kind-cluster")
        assert "triggers" in seen[cmd.name] and cmd.delete_before_replace
        assert not {p for p in seen[cmd.name] if not p.startswith("triggers")}  # images: update in place
