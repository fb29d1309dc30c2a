"""CiliumRelease + MeshCA: values against the real chart, CA sharing, secrets, wiring."""

from __future__ import annotations

import base64
import json

import pytest

from kindmesh.core.planner import load_plan
from kindmesh.core.render import cilium_values, rollout_workloads
from kindmesh.core.versions import CILIUM, DEFAULT_CILIUM
from tests.helpers import STACKS, stack_raw
from tests.mocks import evaluate
from tests.upstream import schema_errors, unknown_key_paths

CHART = f"cilium-{DEFAULT_CILIUM}"
# every validated chart version of every supported minor: values are rendered per version
VERSIONS = [v for line in CILIUM.values() for v in line.validated]
RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module")
def dev():
    return evaluate(stack_raw("dev"), "dev")


def release_values(rec, cluster):
    return rec.named(f"{cluster}-cilium").inputs["values"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("stack", STACKS)
def test_values_validate_against_chart_schema_and_keys_exist(stack, version):
    raw = stack_raw(stack)
    rec = evaluate(dict(raw, cilium={**(raw.get("cilium") or {}), "version": version}), stack)
    for c in rec.plan.clusters:
        values = release_values(rec, c.name)
        assert rec.named(f"{c.name}-cilium").inputs["version"] == version
        assert schema_errors(values, f"cilium-{version}") == []
        assert unknown_key_paths(values, f"cilium-{version}") == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("encryption,hubble,ui", [("wireguard", True, True), ("none", False, False),
                                                  ("none", True, False)])
def test_optional_features_render_valid_values(encryption, hubble, ui, version):
    raw = dict(stack_raw("dev"), cilium={"encryption": encryption, "hubble": hubble, "hubbleUi": ui,
                                         "version": version})
    plan = load_plan(raw, stack="dev")
    values = cilium_values(plan, plan.clusters[0], plan.peer_entries("us"), ("Y2VydA==", "a2V5"))
    assert schema_errors(values, f"cilium-{version}") == []
    assert unknown_key_paths(values, f"cilium-{version}") == []
    assert values["hubble"]["enabled"] is hubble and values["hubble"]["ui"]["enabled"] is ui
    if encryption == "wireguard":
        assert values["encryption"] == {"enabled": True, "type": "wireguard"}
    else:
        assert "encryption" not in values
    names = {w["name"] for w in rollout_workloads(values)}  # what the rollout gate waits for
    assert ("hubble-relay" in names) is hubble and ("hubble-ui" in names) is ui


def test_dev_values_carry_the_plan(dev):
    us = dev.plan.cluster("us")
    v = release_values(dev, "us")
    assert v["cluster"] == {"name": "us", "id": 1}
    assert v["kubeProxyReplacement"] is True
    assert v["k8sServiceHost"] == "km-dev-us-control-plane" and v["k8sServicePort"] == 6443
    assert v["ipam"] == {"mode": "kubernetes"} and v["operator"]["replicas"] == 1
    mesh = v["clustermesh"]
    assert mesh["useAPIServer"] is True
    assert mesh["apiserver"]["service"] == {"type": "LoadBalancer", "loadBalancerIP": us.mesh_ip}
    assert mesh["apiserver"]["tls"]["auto"]["method"] == "helm"
    assert mesh["config"] == {"enabled": True, "clusters": [
        {"name": "eu", "port": 2379, "ips": [dev.plan.cluster("eu").mesh_ip]}]}
    assert v["hubble"]["ui"]["service"]["annotations"] == {"metallb.io/loadBalancerIPs": us.hubble_ui_ip}
    assert v["image"] == {"pullPolicy": "IfNotPresent", "useDigest": False}


def test_same_datapath_in_every_cluster(dev):
    modes = {(release_values(dev, c.name)["routingMode"], release_values(dev, c.name)["tunnelProtocol"])
             for c in dev.plan.clusters}
    assert len(modes) == 1


def test_one_shared_ca_reaches_every_release_only_as_secret(dev):
    keys = dev.of_type("tls:index/privateKey:PrivateKey")
    certs = dev.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert len(keys) == 1 and len(certs) == 1
    cert = certs[0]
    assert cert.inputs["isCaCertificate"] is True
    assert "cert_signing" in cert.inputs["allowedUses"]
    assert cert.inputs["validityPeriodHours"] >= 24 * 365 * 5
    cas = set()
    for c in dev.plan.clusters:
        r = dev.named(f"{c.name}-cilium")
        # only the CA private key is secret: the rest of the values shows in `preview --diff`
        assert r.secret_paths == {"values.tls.ca.key"}, r.secret_paths
        ca = r.inputs["values"]["tls"]["ca"]
        assert base64.b64decode(ca["cert"]).decode().startswith("-----BEGIN CERTIFICATE-----")
        assert base64.b64decode(ca["key"]).decode().startswith("-----BEGIN RSA PRIVATE KEY-----")
        cas.add((ca["cert"], ca["key"]))
        assert dev.depends_on(r, cert) and dev.depends_on(r, keys[0])
    assert len(cas) == 1
    assert "privateKeyPem" in cert.secret_inputs


def test_identical_config_gives_identical_values():
    a = evaluate(stack_raw("dev"), "dev")
    b = evaluate(stack_raw("dev"), "dev")
    for c in a.plan.clusters:
        assert release_values(a, c.name) == release_values(b, c.name)


def test_release_wiring(dev):
    for c in dev.plan.clusters:
        r = dev.named(f"{c.name}-cilium")
        kind = dev.named(f"{c.name}-kind")
        provider = dev.named(f"{c.name}-k8s")
        assert r.type == RELEASE
        assert r.inputs["chart"] == "cilium" and r.inputs["version"] == DEFAULT_CILIUM
        assert r.inputs["repositoryOpts"] == {"repo": "https://helm.cilium.io"}
        assert r.inputs["namespace"] == "kube-system"
        assert r.provider.startswith(provider.urn)
        assert r.deleted_with == kind.urn
        assert kind.urn in r.dependencies
        gate = dev.named(f"{c.name}-cilium-rollout")
        assert gate.type == "command:local:Command" and r.urn in gate.dependencies and gate.deleted_with == kind.urn
        assert gate.inputs["create"].endswith("-m kindmesh.deploy.gate_cmd rollout")
        spec = json.loads(gate.inputs["environment"]["KINDMESH_GATE_SPEC"])
        assert {"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium", "optional": False} in \
            spec["workloads"]
        assert gate.secret_paths == {"environment.KINDMESH_GATE_KUBECONFIG"}


def test_release_does_not_use_helm_wait_because_lb_ips_come_later(dev):
    # Helm's wait blocks on LoadBalancer ingress; MetalLB is installed after Cilium.
    assert dev.named("us-cilium").inputs["skipAwait"] is True


def test_hubble_ui_url_output(dev):
    urls = dev.stack_outputs["hubbleUi"]
    assert urls["us"] == f"http://{dev.plan.cluster('us').hubble_ui_ip}"


def test_schema_check_is_not_toothless():
    assert schema_errors({"cluster": {"id": "one"}}, CHART)
    assert unknown_key_paths({"clustermesh": {"useApiServer": True}}, CHART) == ["clustermesh.useApiServer"]


def test_a_new_peer_shows_in_clear_in_the_existing_releases():
    raw = stack_raw("dev")
    before = evaluate(raw, "dev")
    grown = dict(raw, clusters=[*raw["clusters"], {"name": "ap", "id": 3}])
    after = evaluate(grown, "dev")
    ap_ip = after.plan.cluster("ap").mesh_ip
    for c in before.plan.clusters:
        old = before.named(f"{c.name}-cilium")
        new = after.named(f"{c.name}-cilium")
        peers = new.inputs["values"]["clustermesh"]["config"]["clusters"]
        assert {"name": "ap", "port": 2379, "ips": [ap_ip]} in peers
        assert peers != old.inputs["values"]["clustermesh"]["config"]["clusters"]
        # the changed path is plain, so the diff shows it; the CA key stays the only secret
        assert new.secret_paths == {"values.tls.ca.key"}


def test_ca_certificate_is_public_and_key_is_secret(dev):
    assert "caCertificate" not in dev.secret_stack_outputs
    assert dev.stack.ca is not None
    from pulumi.runtime.sync_await import _sync_await

    assert _sync_await(dev.stack.ca.cert_b64.is_secret()) is False
    assert _sync_await(dev.stack.ca.key_b64.is_secret()) is True


def test_the_rollout_gate_follows_the_values_helm_gets():
    """Extra values that switch Hubble parts off never leave the gate waiting for them."""
    def names(values):
        return {w["name"] for w in rollout_workloads(values)}

    on = {"hubble": {"enabled": True, "relay": {"enabled": True}, "ui": {"enabled": True}}}
    assert {"cilium", "cilium-operator", "clustermesh-apiserver", "hubble-relay", "hubble-ui"} <= names(on)
    relay_off = {"hubble": {"enabled": True, "relay": {"enabled": False}, "ui": {"enabled": True}}}
    assert "hubble-relay" not in names(relay_off) and "hubble-ui" in names(relay_off)
    off = {"hubble": {"enabled": False, "relay": {"enabled": True}, "ui": {"enabled": True}}}
    assert not names(off) & {"hubble-relay", "hubble-ui"}
    assert "cilium" in names({})
