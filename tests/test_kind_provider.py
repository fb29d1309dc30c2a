"""KindClusterProvider / HostImagesProvider against fake kind and docker executables."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from components.kind_cluster import cluster_inputs, host_image_specs
from components.kind_provider import CommandFailed, HostImagesProvider, KindClusterProvider
from stacks.planner import load_plan
from tests.fakes import FakeBin
from tests.helpers import ROOT, stack_raw


@pytest.fixture
def dev_plan():
    return load_plan(stack_raw("dev"), stack="dev")


@pytest.fixture
def props(dev_plan):
    return cluster_inputs(dev_plan, dev_plan.clusters[0])


def test_create_passes_config_network_and_own_kubeconfig(tmp_path, monkeypatch, props):
    fake = FakeBin(tmp_path, nodes={"km-dev-us": ["km-dev-us-control-plane", "km-dev-us-worker"]})
    fake.activate(monkeypatch)
    result = KindClusterProvider().create(dict(props))

    assert result.id == "km-dev-us"
    create = [c for c in fake.calls("kind") if c["args"][:2] == ["create", "cluster"]][0]
    assert create["network"] == "kindmesh-dev"
    assert create["args"][create["args"].index("--name") + 1] == "km-dev-us"
    assert yaml.safe_load(create["config"]) == yaml.safe_load(props["config"])
    home_kube = os.path.expanduser("~/.kube/config")
    assert create["kubeconfig"] != home_kube and create["kubeconfig"].endswith("kubeconfig")
    load = [c for c in fake.calls("kind") if c["args"][:2] == ["load", "docker-image"]][0]
    assert load["args"][2:4] == ["--name", "km-dev-us"]
    assert set(load["args"][4:]) == set(props["images"]) and props["images"]
    assert result.outs["kubeconfig"].startswith("apiVersion: v1")
    assert result.outs["context"] == "kind-km-dev-us"
    assert result.outs["control_plane"] == "km-dev-us-control-plane"
    assert result.outs["nodes"] == ["km-dev-us-control-plane", "km-dev-us-worker"]
    assert fake.state["clusters"] == ["km-dev-us"]


def test_parallel_creates_use_separate_kubeconfig_files(tmp_path, monkeypatch, dev_plan):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    for c in dev_plan.clusters:
        KindClusterProvider().create(cluster_inputs(dev_plan, c))
    paths = [c["kubeconfig"] for c in fake.calls("kind") if c["args"][:2] == ["create", "cluster"]]
    assert len(paths) == 2 and len(set(paths)) == 2


def test_create_refuses_a_cluster_it_does_not_own(tmp_path, monkeypatch, props):
    fake = FakeBin(tmp_path, clusters=["km-dev-us"])
    fake.activate(monkeypatch)
    with pytest.raises(CommandFailed, match="already exists and this stack does not own it"):
        KindClusterProvider().create(dict(props))
    assert not [c for c in fake.calls("kind") if c["args"][:1] in (["create"], ["delete"])]


def test_failed_create_cleans_up_and_reports_kinds_error(tmp_path, monkeypatch, props):
    fake = FakeBin(tmp_path, fail_create="ERROR: failed to create cluster: node(s) already exist for a cluster")
    fake.activate(monkeypatch)
    with pytest.raises(CommandFailed) as err:
        KindClusterProvider().create(dict(props))
    assert "node(s) already exist for a cluster" in str(err.value)
    assert "cleaned up" in str(err.value)
    deletes = [c for c in fake.calls("kind") if c["args"][:2] == ["delete", "cluster"]]
    assert deletes and deletes[0]["args"][3] == "km-dev-us"
    assert fake.state["clusters"] == []


def test_failed_image_load_also_cleans_up(tmp_path, monkeypatch, props):
    fake = FakeBin(tmp_path, fail_load="ERROR: image not present locally")
    fake.activate(monkeypatch)
    with pytest.raises(CommandFailed, match="image not present locally"):
        KindClusterProvider().create(dict(props))
    assert fake.state["clusters"] == []


def test_delete_is_idempotent_and_keeps_home_kubeconfig_untouched(tmp_path, monkeypatch, props):
    fake = FakeBin(tmp_path, clusters=["km-dev-us", "other"])
    fake.activate(monkeypatch)
    p = KindClusterProvider()
    p.delete("km-dev-us", dict(props))
    p.delete("km-dev-us", dict(props))
    assert fake.state["clusters"] == ["other"]
    for call in fake.calls("kind"):
        if call["args"][:2] == ["delete", "cluster"]:
            assert call["kubeconfig"] != os.path.expanduser("~/.kube/config")


def test_read_of_a_missing_cluster_yields_empty_id(tmp_path, monkeypatch, props):
    FakeBin(tmp_path).activate(monkeypatch)
    result = KindClusterProvider().read("km-dev-us", dict(props))
    assert result.id == ""


def test_read_of_an_existing_cluster_refreshes_outputs(tmp_path, monkeypatch, props):
    FakeBin(tmp_path, clusters=["km-dev-us"]).activate(monkeypatch)
    result = KindClusterProvider().read("km-dev-us", dict(props))
    assert result.id == "km-dev-us"
    assert "current-context: kind-km-dev-us" in result.outs["kubeconfig"]


@pytest.mark.parametrize(
    "key,value",
    [("pod_subnet", "10.9.0.0/17"), ("service_subnet", "10.9.128.0/20"), ("workers", 3),
     ("node_image", "kindest/node:v1.33.4@sha256:" + "0" * 64), ("network", "elsewhere")],
)
def test_diff_marks_unchangeable_inputs_as_replacements(props, key, value):
    news = dict(props, **{key: value})
    diff = KindClusterProvider().diff("km-dev-us", dict(props), news)
    assert diff.changes is True
    assert key in diff.replaces
    assert diff.delete_before_replace is True


def test_diff_of_config_change_replaces_and_images_update_in_place(dev_plan, props):
    other = load_plan(dict(stack_raw("dev"), clusters=[{"name": "us", "workers": 2}, {"name": "eu"}]), stack="dev")
    news = cluster_inputs(other, other.clusters[0])
    diff = KindClusterProvider().diff("km-dev-us", dict(props), news)
    assert {"config", "workers"} <= set(diff.replaces)

    news = dict(props, images=props["images"] + ["docker.io/library/busybox:1.37"])
    diff = KindClusterProvider().diff("km-dev-us", dict(props), news)
    assert diff.changes is True and diff.replaces == []

    diff = KindClusterProvider().diff("km-dev-us", dict(props), dict(props))
    assert diff.changes is False


def test_update_loads_only_new_images(tmp_path, monkeypatch, props):
    fake = FakeBin(tmp_path, clusters=["km-dev-us"])
    fake.activate(monkeypatch)
    news = dict(props, images=props["images"] + ["docker.io/library/busybox:1.37"])
    KindClusterProvider().update("km-dev-us", dict(props), news)
    loads = [c for c in fake.calls("kind") if c["args"][:2] == ["load", "docker-image"]]
    assert loads[0]["args"][4:] == ["docker.io/library/busybox:1.37"]


def test_host_images_pull_by_digest_and_tag_for_kind_load(tmp_path, monkeypatch, dev_plan):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    specs = host_image_specs(dev_plan.images)
    HostImagesProvider().create({"images": specs})
    pulls = [c["args"][1] for c in fake.calls("docker") if c["args"][0] == "pull"]
    tags = [c["args"][1:] for c in fake.calls("docker") if c["args"][0] == "tag"]
    assert pulls == [s["pinned"] for s in specs]
    agent = "quay.io/cilium/cilium:v1.19.6@sha256:0df5b2750b64c49843aba1d649e9eaf61467cb0645ad3171db6f6962c095ac92"
    assert agent in pulls
    assert ["quay.io/cilium/cilium@sha256:0df5b2750b64c49843aba1d649e9eaf61467cb0645ad3171db6f6962c095ac92",
            "quay.io/cilium/cilium:v1.19.6"] in tags


def test_host_images_failure_names_the_image(tmp_path, monkeypatch):
    missing = "quay.io/nope/nothing:v0@sha256:" + "1" * 64
    FakeBin(tmp_path, missing_images=[missing]).activate(monkeypatch)
    with pytest.raises(CommandFailed, match="nope/nothing"):
        HostImagesProvider().create({"images": host_image_specs([missing])})


def test_providers_survive_engine_serialization_in_a_fresh_interpreter(tmp_path, props):
    """The engine dill-pickles the provider and loads it in a separate process."""
    from pulumi.dynamic.dynamic import serialize_provider

    for provider in (KindClusterProvider(), HostImagesProvider()):
        blob = serialize_provider(provider)
        check = textwrap.dedent(
            """
            import base64, json, sys, dill
            provider = dill.loads(base64.b64decode(sys.stdin.read()))
            olds = json.loads(sys.argv[1])
            news = dict(olds, pod_subnet="10.99.0.0/17", workers=9, images=["x:1"], cluster="other")
            d = provider.diff("x", olds, news)
            print(type(provider).__name__, d.changes, sorted(d.replaces or []))
            """
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        env["PYTHONPATH"] = str(ROOT)
        out = subprocess.run(
            [sys.executable, "-c", check, __import__("json").dumps(dict(props, cluster="us"))],
            input=blob, capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
        ).stdout.split()
        assert out[0] == type(provider).__name__
        assert out[1] == "True"
        replaced = " ".join(out[2:])
        if isinstance(provider, KindClusterProvider):
            assert "pod_subnet" in replaced and "workers" in replaced
        else:
            assert replaced == "[]"  # new images are pulled in place
