"""kindctl (kind create/delete/pre-pull in their own process) and the quick info provider,
against fake kind and docker executables."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from kindmesh.components.kind_cluster import host_image_specs
from kindmesh.components.kind_provider import KindClusterInfoProvider, KindClusterPresenceProvider
from kindmesh.core.planner import load_plan
from kindmesh.core.versions import DEFAULT_CILIUM, cilium_image_set
from kindmesh.deploy import kindctl
from kindmesh.deploy.kindctl import ToolError
from kindmesh.stacks.composition import cluster_inputs
from tests.fakes import FakeBin
from tests.helpers import stack_raw


@pytest.fixture
def dev_plan():
    return load_plan(stack_raw("dev"), stack="dev")


@pytest.fixture
def spec(dev_plan):
    return cluster_inputs(dev_plan, dev_plan.clusters[0])


def kind_calls(fake, *prefix):
    return [c for c in fake.calls("kind") if c["args"][: len(prefix)] == list(prefix)]


def test_create_passes_config_network_and_own_kubeconfig(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path, nodes={"km-dev-us": ["km-dev-us-control-plane", "km-dev-us-worker"]})
    fake.activate(monkeypatch)
    assert kindctl.ensure(dict(spec)) == "created"

    create = kind_calls(fake, "create", "cluster")[0]
    assert create["network"] == "kindmesh-dev"
    assert create["args"][create["args"].index("--name") + 1] == "km-dev-us"
    assert yaml.safe_load(create["config"]) == yaml.safe_load(spec["config"])
    assert create["kubeconfig"] != os.path.expanduser("~/.kube/config")
    assert create["kubeconfig"].startswith(str(tmp_path / "run"))  # private per-user dir
    load = kind_calls(fake, "load", "docker-image")[0]  # classic image store
    assert load["args"][2:4] == ["--name", "km-dev-us"]
    assert set(load["args"][4:]) == {i["tag"] for i in spec["images"]} and spec["images"]
    marker = json.loads(fake.state["markers"]["km-dev-us-control-plane"])
    assert marker["hash"] == kindctl.spec_hash(spec)
    info = kindctl.cluster_info("km-dev-us", "kindmesh-dev")
    assert info["context"] == "kind-km-dev-us" and info["control_plane"] == "km-dev-us-control-plane"
    assert info["nodes"] == ["km-dev-us-control-plane", "km-dev-us-worker"]
    assert "server: https://127.0.0.1:6443" in info["kubeconfig"]


def test_parallel_creates_use_separate_kubeconfig_files(tmp_path, monkeypatch, dev_plan):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    for c in dev_plan.clusters:
        kindctl.ensure(cluster_inputs(dev_plan, c))
    paths = [c["kubeconfig"] for c in kind_calls(fake, "create", "cluster")]
    assert len(paths) == 2 and len(set(paths)) == 2


def test_a_foreign_cluster_with_our_name_is_refused_and_untouched(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path, clusters=["km-dev-us"], containers={"km-dev-us-control-plane": ["kind"]})
    fake.activate(monkeypatch)
    with pytest.raises(ToolError, match="already exists and is not this stack's"):
        kindctl.ensure(dict(spec))
    assert not kind_calls(fake, "create") and not kind_calls(fake, "delete")
    assert fake.state["clusters"] == ["km-dev-us"]


@pytest.mark.parametrize("winner_network", ["kind", "kindmesh-dev"])
def test_losing_a_create_race_never_deletes_the_winners_cluster(tmp_path, monkeypatch, spec, winner_network):
    """`kind get clusters` said no, then someone else's create won: their cluster survives, whether
    it is on another network or on this stack's own (the ownership rule would call it ours), and
    no message advises deleting it."""
    assert spec["network"] == "kindmesh-dev"
    fake = FakeBin(tmp_path, race_create=True, race_network=winner_network)
    fake.activate(monkeypatch)
    with pytest.raises(ToolError) as err:
        kindctl.ensure(dict(spec))
    text = str(err.value)
    assert "left untouched" in text and "node(s) already exist" in text
    assert ("on this stack's network 'kindmesh-dev'" in text) == (winner_network == "kindmesh-dev")
    assert "kind delete" not in text and "delete it" not in text
    assert not kind_calls(fake, "delete")
    assert fake.state["clusters"] == ["km-dev-us"]
    assert fake.state["containers"] == {"km-dev-us-control-plane": [winner_network]}


def test_failed_create_cleans_up_what_this_call_created(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path, fail_create="ERROR: failed to create cluster: failed to init node with kubeadm")
    fake.activate(monkeypatch)
    with pytest.raises(ToolError) as err:
        kindctl.ensure(dict(spec))
    assert "kubeadm" in str(err.value) and "was cleaned up" in str(err.value)
    deletes = kind_calls(fake, "delete", "cluster")
    assert deletes and deletes[0]["args"][3] == "km-dev-us"
    assert fake.state["clusters"] == []


def test_failed_image_load_also_cleans_up(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path, fail_load="ERROR: image not present locally")
    fake.activate(monkeypatch)
    with pytest.raises(ToolError, match="image not present locally"):
        kindctl.ensure(dict(spec))
    assert fake.state["clusters"] == []


def test_junk_kubeconfig_with_exit_0_is_rejected_without_echoing_it(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path, junk_kubeconfig="token: s3cr3t-value\nhello")
    fake.activate(monkeypatch)
    with pytest.raises(ToolError) as err:
        kindctl.ensure(dict(spec))
    text = str(err.value)
    assert "kind get kubeconfig --name km-dev-us" in text and "no usable kubeconfig" in text
    assert "s3cr3t" not in text
    assert fake.state["clusters"] == []  # this call created it, so it cleaned up


@pytest.mark.parametrize("junk,why", [
    ("{{{", "not YAML"),
    ("apiVersion: v1\nkind: Config\ncontexts: []\n", "no context 'kind-x'"),
    ("apiVersion: v1\nkind: Config\ncontexts:\n- name: kind-x\n  context: {cluster: c}\nclusters:\n"
     "- name: c\n  cluster: {server: 'http://plain'}\n", "no cluster with an https server"),
])
def test_kubeconfig_validation(junk, why):
    with pytest.raises(ToolError, match=why):
        kindctl.validate_kubeconfig(junk, "x")


def test_interrupted_up_cluster_with_same_config_is_adopted(tmp_path, monkeypatch, spec, capsys):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    kindctl.ensure(dict(spec))  # the "interrupted" run got this far; its state was lost
    capsys.readouterr()
    assert kindctl.ensure(dict(spec)) == "adopted"
    assert "adopted kind cluster 'km-dev-us'" in capsys.readouterr().err
    assert len(kind_calls(fake, "create", "cluster")) == 1 and not kind_calls(fake, "delete")


def test_unfinished_or_different_cluster_on_our_network_is_recreated(tmp_path, monkeypatch, spec, capsys):
    fake = FakeBin(tmp_path, clusters=["km-dev-us"], containers={"km-dev-us-control-plane": ["kindmesh-dev"]})
    fake.activate(monkeypatch)
    assert kindctl.ensure(dict(spec)) == "recreated"  # no marker: create never finished
    assert "recreating kind cluster 'km-dev-us'" in capsys.readouterr().err
    assert kindctl.ensure(dict(spec, workers=3)) == "recreated"  # another config
    assert "another config" in capsys.readouterr().err
    assert len(kind_calls(fake, "delete", "cluster")) == 2


def test_update_loads_only_missing_images(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    kindctl.ensure(dict(spec))
    extra = host_image_specs(["docker.io/library/busybox:1.37"])
    assert kindctl.ensure(dict(spec, images=spec["images"] + extra), updating=True) == "updated"
    loads = kind_calls(fake, "load", "docker-image")
    assert loads[-1]["args"][4:] == ["docker.io/library/busybox:1.37"]


def test_delete_is_idempotent_and_never_deletes_someone_elses(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path, clusters=["km-dev-us", "other"],
                   containers={"km-dev-us-control-plane": ["kindmesh-dev"]})
    fake.activate(monkeypatch)
    assert kindctl.delete(dict(spec)) == "deleted"
    assert kindctl.delete(dict(spec)) == "absent"
    assert fake.state["clusters"] == ["other"]
    for call in kind_calls(fake, "delete", "cluster"):
        assert call["kubeconfig"] != os.path.expanduser("~/.kube/config")

    fake.update(clusters=["km-dev-us"], containers={"km-dev-us-control-plane": ["kind"]})
    assert kindctl.delete(dict(spec)) == "foreign"
    assert fake.state["clusters"] == ["km-dev-us"]


def test_info_provider_read_notices_a_cluster_deleted_behind_pulumis_back(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    kindctl.ensure(dict(spec))
    props = {"name": "km-dev-us", "network": "kindmesh-dev", "cluster": "{}", "command_urn": "urn:x::cmd"}
    p = KindClusterInfoProvider()
    created = p.create(dict(props))
    assert created.id == "km-dev-us" and created.outs["kubeconfig"].startswith("apiVersion: v1")
    assert p.read("km-dev-us", created.outs).id == "km-dev-us"

    fake.update(clusters=[])  # `kind delete cluster` by hand
    assert p.read("km-dev-us", created.outs).id == ""
    with pytest.raises(ToolError, match=r"pulumi up --replace 'urn:x::cmd'"):
        p.create(dict(props))


def test_a_cluster_deleted_by_hand_loses_its_presence_token_and_the_commands_update_recreates_it(
        tmp_path, monkeypatch, spec):
    """refresh drops the token (read: gone); the next up's new token runs the command's update,
    which makes the cluster again and says so, with the token, on stdout (the image load reruns)."""
    fake = FakeBin(tmp_path, nodes={"km-dev-us": ["km-dev-us-control-plane", "km-dev-us-worker"]})
    fake.activate(monkeypatch)
    presence = KindClusterPresenceProvider()
    props = {"name": "km-dev-us", "network": "kindmesh-dev"}
    token = presence.create(dict(props))  # before the cluster: no call
    assert token.id and not fake.calls("kind")
    assert kindctl.ensure(dict(spec)) == "created"
    assert presence.read(token.id, token.outs).id == token.id  # a plain refresh keeps it
    fake.update(clusters=[])  # `kind delete cluster` by hand
    assert presence.read(token.id, token.outs).id == ""  # refresh drops it
    again = presence.create(dict(props))
    assert again.id != token.id  # a new token: the command's environment changes, its update runs
    fake.update(clusters=["km-dev-us"])
    assert kindctl.ensure(dict(spec), updating=True) == "updated"  # back (same config): nothing to make
    fake.update(clusters=[])
    assert kindctl.ensure(dict(spec), updating=True) == "recreated"
    assert presence.diff(again.id, props, dict(props)).changes is False
    assert presence.diff(again.id, props, dict(props, network="m")).replaces == ["network"]


def test_the_commands_stdout_carries_the_presence_token(tmp_path, monkeypatch, spec, capsys):
    fake = FakeBin(tmp_path, nodes={"km-dev-us": ["km-dev-us-control-plane", "km-dev-us-worker"]})
    fake.activate(monkeypatch)
    monkeypatch.setenv(kindctl.SPEC_ENV, json.dumps(spec))
    monkeypatch.setenv(kindctl.PRESENCE_ENV, "t1")
    assert kindctl.main(["create"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["present"] == "t1" and out["action"] == "created"


def test_info_provider_diff(spec):
    p = KindClusterInfoProvider()
    olds = {"name": "a", "network": "n", "cluster": "x", "command_urn": "u"}
    assert p.diff("a", olds, dict(olds)).changes is False
    d = p.diff("a", olds, dict(olds, cluster="y"))
    assert d.changes is True and d.replaces == []
    assert p.diff("a", olds, dict(olds, network="m")).replaces == ["network"]


@pytest.mark.parametrize("key,value", [
    ("pod_subnet", "10.9.0.0/17"), ("service_subnet", "10.9.128.0/20"), ("workers", 3),
    ("node_image", "kindest/node:v1.33.4@sha256:" + "0" * 64), ("network", "elsewhere"), ("config", "x"),
])
def test_immutable_inputs_change_the_replace_trigger_and_images_do_not(spec, key, value):
    assert kindctl.spec_hash(dict(spec, **{key: value})) != kindctl.spec_hash(spec)
    assert kindctl.spec_hash(dict(spec, images=[])) == kindctl.spec_hash(spec)


# ------------------------------------------------------------------ pre-pull per image store


def test_prepull_classic_store_pulls_once_by_digest_and_tags(tmp_path, monkeypatch, dev_plan):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    specs = host_image_specs(dev_plan.images)
    result = kindctl.prepull(specs)
    assert result["store"] == "classic" and result["archives"] == []
    pulls = [c["args"][1:] for c in fake.calls("docker") if c["args"][0] == "pull"]
    assert pulls == [[s["pinned"]] for s in specs]
    tags = [c["args"][1:] for c in fake.calls("docker") if c["args"][0] == "tag"]
    agent = cilium_image_set(DEFAULT_CILIUM)["agent"]
    assert [f"{agent.repository}@{agent.digest}", agent.by_tag] in tags


def test_containerd_store_uses_single_platform_archives_once_for_n_clusters(tmp_path, monkeypatch, dev_plan):
    fake = FakeBin(tmp_path, store="containerd", platform="linux/arm64")
    fake.activate(monkeypatch)
    specs = host_image_specs(dev_plan.images)
    result = kindctl.prepull(specs)
    assert result["store"] == "containerd" and len(result["archives"]) == len(specs)
    for c in dev_plan.clusters:
        kindctl.ensure(cluster_inputs(dev_plan, c))
    docker = fake.calls("docker")
    pulls = [c["args"] for c in docker if c["args"][0] == "pull"]
    saves = [c["args"] for c in docker if c["args"][0] == "save"]
    assert len(pulls) == len(specs) and all(p[1:3] == ["--platform", "linux/arm64"] for p in pulls)
    assert len(saves) == len(specs) and all(s[1:3] == ["--platform", "linux/arm64"] for s in saves)
    assert not kind_calls(fake, "load", "docker-image")  # the call that fails on this store
    archives = kind_calls(fake, "load", "image-archive")
    assert len(archives) == len(specs) * len(dev_plan.clusters)
    assert {a["args"][-1] for a in archives} == {c.kind_name for c in dev_plan.clusters}


@pytest.mark.parametrize("said", [
    '"--platform" requires API version 1.48, but the Docker daemon API version is 1.47',
    "unknown flag: --platform",
])
def test_a_docker_too_old_for_platform_saves_says_so(tmp_path, monkeypatch, dev_plan, said):
    FakeBin(tmp_path, store="containerd", save_error=said).activate(monkeypatch)
    with pytest.raises(ToolError) as err:
        kindctl.prepull(host_image_specs(dev_plan.images))
    assert said in str(err.value) and "Docker 28 (Engine API 1.48)" in str(err.value)
    assert "kindmesh:kind.prePull: false" in str(err.value)


def test_containerd_store_makes_a_missing_archive_again(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path, store="containerd")
    fake.activate(monkeypatch)
    kindctl.ensure(dict(spec))  # no prepull ran (e.g. the cache was cleaned)
    assert len(kind_calls(fake, "load", "image-archive")) == len(spec["images"])


def test_kind_load_docker_image_fails_on_the_fake_containerd_store(tmp_path, monkeypatch):
    fake = FakeBin(tmp_path, store="containerd", clusters=["x"])
    fake.activate(monkeypatch)
    with pytest.raises(ToolError, match="content digest sha256:.* not found"):
        kindctl.run(["kind", "load", "docker-image", "--name", "x", "a:1"])


def test_prepull_failure_names_the_image(tmp_path, monkeypatch):
    missing = "quay.io/nope/nothing:v0@sha256:" + "1" * 64
    FakeBin(tmp_path, missing_images=[missing]).activate(monkeypatch)
    with pytest.raises(ToolError, match="nope/nothing"):
        kindctl.prepull(host_image_specs([missing]))


def test_a_failed_create_never_deletes_a_cluster_that_appeared_on_another_network(tmp_path, monkeypatch, spec):
    """kind failed with another error while someone else's create (another stack) took the name."""
    fake = FakeBin(tmp_path, fail_create="ERROR: failed to create cluster: Conflict. The container is busy")
    fake.activate(monkeypatch)
    real_run = kindctl.run

    def run(args, **kw):
        proc = real_run(args, **kw)
        if list(args)[1:3] == ["create", "cluster"]:
            fake.update(containers={"km-dev-us-control-plane": ["kindmesh-other"]})
        return proc

    monkeypatch.setattr(kindctl, "run", run)
    with pytest.raises(ToolError) as err:
        kindctl.ensure(dict(spec))
    assert "left untouched" in str(err.value) and "container is busy" in str(err.value)
    assert not kind_calls(fake, "delete")
    assert fake.state["clusters"] == ["km-dev-us"]


# ------------------------------------------------------------------ the image load, a step of its own


def load_spec_of(spec):
    return {"name": spec["name"], "network": spec["network"], "images": spec["images"]}


def test_create_without_images_then_load_loads_them_once(tmp_path, monkeypatch, spec):
    """The stack's create carries no images (kind create overlaps the pull); `load` brings them."""
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    bare = {k: v for k, v in spec.items() if k != "images"}
    assert kindctl.ensure(bare) == "created"
    assert not kind_calls(fake, "load")
    assert kindctl.load(load_spec_of(spec)) == "loaded"
    (call,) = kind_calls(fake, "load", "docker-image")
    assert set(call["args"][4:]) == {i["tag"] for i in spec["images"]}
    marker = json.loads(fake.state["markers"]["km-dev-us-control-plane"])
    assert marker["hash"] == kindctl.spec_hash(spec)  # the create's marker, kept
    assert marker["images"] == sorted(i["pinned"] for i in spec["images"])
    # again (a second up, or new images): only what is missing
    assert kindctl.load(load_spec_of(spec)) == "present"
    extra = host_image_specs(["docker.io/library/busybox:1.37"])
    assert kindctl.load(dict(load_spec_of(spec), images=spec["images"] + extra)) == "loaded"
    assert kind_calls(fake, "load", "docker-image")[-1]["args"][4:] == ["docker.io/library/busybox:1.37"]
    assert bare == {k: v for k, v in spec.items() if k != "images"}  # hash unchanged without images
    assert kindctl.spec_hash(bare) == kindctl.spec_hash(spec)


def test_load_never_creates_or_deletes_and_says_what_is_wrong(tmp_path, monkeypatch, spec):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    with pytest.raises(ToolError, match="does not exist on docker network 'kindmesh-dev'"):
        kindctl.load(load_spec_of(spec))
    fake.update(clusters=["km-dev-us"], containers={"km-dev-us-control-plane": ["kind"]})  # someone else's
    with pytest.raises(ToolError, match="does not exist on docker network"):
        kindctl.load(load_spec_of(spec))
    fake.update(clusters=["km-dev-us"], containers={"km-dev-us-control-plane": ["kindmesh-dev"]})  # no marker
    with pytest.raises(ToolError, match="create never finished"):
        kindctl.load(load_spec_of(spec))
    assert not kind_calls(fake, "create") and not kind_calls(fake, "delete") and not kind_calls(fake, "load")


def test_load_cli_prints_a_summary_without_secrets(tmp_path, monkeypatch, spec, capsys):
    fake = FakeBin(tmp_path)
    fake.activate(monkeypatch)
    kindctl.ensure({k: v for k, v in spec.items() if k != "images"})
    monkeypatch.setenv(kindctl.SPEC_ENV, json.dumps(load_spec_of(spec)))
    assert kindctl.main(["load"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"name": "km-dev-us", "action": "loaded", "images": len(spec["images"])}


def test_a_create_cut_short_by_docker_going_away_says_so_and_what_to_do(tmp_path, monkeypatch, spec):
    down = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
    fake = FakeBin(tmp_path, fail_create=f"ERROR: failed to create cluster: {down}")
    fake.activate(monkeypatch)
    with pytest.raises(ToolError) as err:
        kindctl.ensure(dict(spec))
    text = str(err.value)
    assert "the Docker daemon is not reachable" in text and "run `pulumi up` again" in text
    assert down in text  # what kind said, kept
    assert "kind delete cluster" not in text  # nothing to do by hand: the next run recreates it
