"""The LoadBalancer gate (issue 20): `up` fails unless clustermesh-apiserver (and Hubble UI) got
the IPs their peers were given. Logic with a fake API and clock; the process against a loopback
API server; the wiring under Pulumi mocks."""

from __future__ import annotations

import json

import pytest

from kindmesh.core.planner import load_plan
from kindmesh.core.render import cilium_values, planned_lb_services
from kindmesh.deploy.gate_cmd import SPEC_ENV, read_spec
from kindmesh.deploy.gates import GateError, lb_ip_assigned, wait_for_lb_ips
from kindmesh.deploy.kubeapi import KubeError
from tests.fake_apiserver import FakeApiServer
from tests.helpers import STACKS, stack_raw
from tests.mocks import evaluate
from tests.test_gate_cmd import run
from tests.test_gates import FakeApi, FakeTime

MESH = {"namespace": "kube-system", "name": "clustermesh-apiserver", "ip": "172.30.255.239"}
UI = {"namespace": "kube-system", "name": "hubble-ui", "ip": "172.30.255.240"}
MESH_PATH = "/api/v1/namespaces/kube-system/services/clustermesh-apiserver"
UI_PATH = "/api/v1/namespaces/kube-system/services/hubble-ui"


def svc(*ips: str, type_: str = "LoadBalancer") -> dict:
    return {"kind": "Service", "spec": {"type": type_},
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]}}}


@pytest.mark.parametrize("obj,ok,said", [
    (svc("172.30.255.239"), True, "LoadBalancer IP 172.30.255.239"),
    (svc(), False, "no LoadBalancer IP yet (planned 172.30.255.239)"),
    (svc("172.30.255.250"), False, "it got 172.30.255.250 instead of the planned 172.30.255.239"),
    (svc(type_="ClusterIP"), False, "of type ClusterIP, not LoadBalancer"),
    ({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": "junk"}}}, False, "no LoadBalancer IP"),
    ({}, False, "not LoadBalancer"),
])
def test_lb_ip_assigned(obj, ok, said):
    got, reason = lb_ip_assigned(obj, "172.30.255.239")
    assert got is ok and said in reason


def test_waits_for_every_planned_ip_then_passes():
    t = FakeTime()
    api = FakeApi(t, [None], objects={MESH_PATH: [KubeError(404, "not found"), svc(), svc("172.30.255.239")],
                                      UI_PATH: [svc(), svc("172.30.255.240")]})
    result = wait_for_lb_ips(api, "us", [MESH, UI], timeout=120, clock=t.clock())
    assert result.attempts == 5
    assert "not created yet" in result.errors[0] and "no LoadBalancer IP yet" in result.errors[1]
    assert [w[0] for w in api.watches][:2] == [
        "/api/v1/namespaces/kube-system/services?fieldSelector=metadata.name%3Dclustermesh-apiserver"] * 2


@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_a_service_that_got_another_ip_fails_at_the_deadline_saying_what_it_got(rand):
    """A k3s traefik (or any LoadBalancer Service) took the mesh IP first: bounded, jittered
    backoff under one deadline, then one paragraph naming the cluster, the Service, both IPs."""
    t = FakeTime(rand=rand)
    api = FakeApi(t, [None], objects={MESH_PATH: [svc("172.30.255.250")]})
    with pytest.raises(GateError) as err:
        wait_for_lb_ips(api, "us", [MESH], timeout=60, first_backoff=1, max_backoff=8, clock=t.clock())
    text = str(err.value)
    assert "Service kube-system/clustermesh-apiserver in cluster 'us' did not get its planned LoadBalancer IP " \
           "172.30.255.239" in text
    assert "last seen: it got 172.30.255.250 instead of the planned 172.30.255.239" in text
    assert "(limit 60s)" in text and "kubectl get services -A -o wide | grep -F 172.30.255.239" in text
    assert 60 <= t.now <= 60 + 1e-6  # one deadline, never overrun
    pauses = [w[1] for w in api.watches]
    assert all(p <= 8 for p in pauses) and len(pauses) <= 60  # bounded backoff: no busy loop
    assert pauses[1] >= pauses[0]  # exponential until the cap
    assert all(b / 2 <= p <= b for p, b in zip(pauses, [1, 2, 4, 8, 8, 8], strict=False))  # equal jitter


def test_a_forbidden_read_is_an_auth_error_at_once():
    t = FakeTime()
    api = FakeApi(t, [None], objects={MESH_PATH: [KubeError(403, 'services "x" is forbidden: User cannot get')]})
    with pytest.raises(GateError, match="cannot get permission"):
        wait_for_lb_ips(api, "us", [MESH], timeout=60, clock=t.clock())
    assert t.now == 0


# --------------------------------------------------------------------------- what is waited for
def test_the_planned_services_come_from_the_values_helm_gets():
    plan = load_plan(stack_raw("dev"), stack="dev")
    us = plan.cluster("us")
    assert planned_lb_services(cilium_values(plan, us)) == [
        dict(MESH, ip=us.mesh_ip), dict(UI, ip=us.hubble_ui_ip)]
    ci = load_plan(stack_raw("ci"), stack="ci")  # no Hubble UI
    assert [s["name"] for s in planned_lb_services(cilium_values(ci, ci.clusters[0]))] == ["clustermesh-apiserver"]
    assert planned_lb_services({"clustermesh": {"apiserver": {"service": {"type": "NodePort"}}}}) == []


# --------------------------------------------------------------------------- the process
def test_the_gate_process_passes_and_fails_with_one_paragraph():
    answers = {"clustermesh-apiserver": svc("172.30.255.239"), "hubble-ui": svc()}

    def reply(method, path, body):
        name = path.split("?")[0].rsplit("/", 1)[-1]
        return answers.get(name, svc())

    spec = {"cluster": "us", "services": [MESH], "timeout": 5}
    with FakeApiServer(reply) as api:
        ok = run("loadbalancer", api.kubeconfig(), spec)
        bad = run("loadbalancer", api.kubeconfig(), dict(spec, services=[MESH, UI], timeout=3))
    assert ok.returncode == 0 and "loadbalancer gate of cluster 'us' passed" in ok.stdout, ok.stderr
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "hubble-ui in cluster 'us' did not get its planned LoadBalancer IP 172.30.255.240" in bad.stderr
    assert "no LoadBalancer IP yet" in bad.stderr


@pytest.mark.parametrize("services", [[], [dict(MESH, ip="not-an-ip")], [{"name": "x", "ip": "10.0.0.1"}], "x"])
def test_bad_specs_exit_2(services):
    from kindmesh.deploy.gate_cmd import UsageError

    env = {"KINDMESH_GATE_KUBECONFIG": "x", SPEC_ENV: json.dumps({"cluster": "us", "timeout": 5,
                                                                   "services": services})}
    with pytest.raises(UsageError):
        read_spec("loadbalancer", env)


# --------------------------------------------------------------------------- the wiring
@pytest.fixture(scope="module", params=STACKS)
def rec(request):
    return evaluate(stack_raw(request.param), request.param)


def test_every_cluster_has_the_gate_after_cilium_and_its_pools(rec):
    for c in rec.plan.clusters:
        gate = rec.named(f"{c.name}-lb-ips")
        assert gate.inputs["create"].endswith("-m kindmesh.deploy.gate_cmd loadbalancer")
        _, spec = read_spec("loadbalancer", gate.inputs["environment"])
        planned = {s["name"]: s["ip"] for s in spec["services"]}
        assert planned["clustermesh-apiserver"] == c.mesh_ip
        assert planned.get("hubble-ui") == c.hubble_ui_ip
        assert rec.depends_on(gate, rec.named(f"{c.name}-cilium-rollout"))
        for pool in (f"{c.name}-pool", f"{c.name}-reserved-pool", f"{c.name}-l2"):
            assert rec.depends_on(gate, rec.named(pool)), pool
        assert gate.deleted_with == rec.named(f"{c.name}-kind").urn
        assert gate.secret_paths == {"environment.KINDMESH_GATE_KUBECONFIG"}
