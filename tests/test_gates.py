"""Readiness gates: MetalLB webhook and rollout waits, with a fake API and clock."""

from __future__ import annotations

import pytest

from stacks.gates import GateError, is_retryable, wait_for_metallb_webhook, wait_for_rollouts, workload_ready
from stacks.kubeapi import KubeError, Response
from stacks.planner import load_plan
from stacks.render import ip_address_pool
from tests.helpers import stack_raw

REFUSED = ('Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": '
           'failed to call webhook: Post "https://metallb-webhook-service.metallb-system.svc:443/'
           'validate-metallb-io-v1beta1-ipaddresspool?timeout=10s": dial tcp 10.1.134.7:443: '
           "connect: connection refused")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeApi:
    def __init__(self, clock, answers, objects=None):
        self.clock = clock
        self.answers = list(answers)
        self.objects = objects or {}
        self.posts = []
        self.watches = []

    def dry_run_create(self, path, obj):
        self.posts.append((path, obj))
        answer = self.answers.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        return Response(201, obj)

    def get(self, path):
        seq = self.objects[path]
        obj = seq.pop(0) if len(seq) > 1 else seq[0]
        if isinstance(obj, KubeError):
            raise obj
        return Response(200, obj)

    def wait_for_change(self, path, timeout_seconds):
        self.watches.append((path, timeout_seconds))
        self.clock.now += timeout_seconds  # nothing changed: the watch ran to its bound
        return False


@pytest.fixture
def pool():
    plan = load_plan(stack_raw("dev"), stack="dev")
    return ip_address_pool(plan, plan.clusters[0])


def test_webhook_gate_retries_until_the_webhook_answers(pool):
    clock = Clock()
    api = FakeApi(clock, [KubeError(500, REFUSED), KubeError(500, REFUSED), "ok"])
    result = wait_for_metallb_webhook(api, "us", pool, clock=clock)
    assert result.attempts == 3
    assert api.posts[0][0] == "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"
    assert api.posts[0][1] == pool
    # it waited on the webhook's endpoints, with growing bounds
    assert all("kubernetes.io%2Fservice-name%3Dmetallb-webhook-service" in w[0] for w in api.watches)
    assert [w[1] for w in api.watches] == [2, 4]


def test_webhook_gate_gives_up_with_a_message_naming_the_cluster(pool):
    clock = Clock()
    api = FakeApi(clock, [KubeError(500, REFUSED)] * 100)
    with pytest.raises(GateError) as err:
        wait_for_metallb_webhook(api, "eu", pool, timeout=60, clock=clock)
    text = str(err.value)
    assert "cluster 'eu'" in text and "connection refused" in text and "limit 60s" in text
    assert clock.now <= 60 + 20


def test_webhook_gate_respects_the_attempt_bound(pool):
    clock = Clock()
    api = FakeApi(clock, [KubeError(500, REFUSED)] * 100)
    with pytest.raises(GateError, match="after 5 attempts"):
        wait_for_metallb_webhook(api, "us", pool, max_attempts=5, timeout=10_000, clock=clock)
    assert len(api.posts) == 5


def test_a_denied_pool_fails_at_once(pool):
    clock = Clock()
    denied = KubeError(403, 'admission webhook "ipaddresspoolvalidationwebhook.metallb.io" denied the request: '
                            "CIDR 172.30.255.239/32 overlaps with CIDR 172.30.255.239/32")
    api = FakeApi(clock, [denied])
    with pytest.raises(GateError, match="rejected the address pool.*overlaps"):
        wait_for_metallb_webhook(api, "us", pool, clock=clock)
    assert len(api.posts) == 1 and api.watches == []


def test_already_existing_pool_counts_as_admitted(pool):
    api = FakeApi(Clock(), [KubeError(409, 'ipaddresspools.metallb.io "kindmesh-pool" already exists')])
    assert wait_for_metallb_webhook(api, "us", pool, clock=Clock()).attempts == 1


def test_retryable_classification():
    assert is_retryable(KubeError(500, REFUSED))
    assert is_retryable(KubeError(0, "cannot reach https://127.0.0.1:1234"))
    assert is_retryable(KubeError(404, "the server could not find the requested resource"))
    assert not is_retryable(KubeError(422, "IPAddressPool is invalid"))
    assert not is_retryable(KubeError(403, "forbidden"))


def ds(desired, ready, updated, gen=2, observed=2):
    return {"kind": "DaemonSet", "metadata": {"generation": gen},
            "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                       "numberReady": ready, "updatedNumberScheduled": updated}}


def deploy(want, available, updated):
    return {"kind": "Deployment", "metadata": {"generation": 1}, "spec": {"replicas": want},
            "status": {"observedGeneration": 1, "availableReplicas": available, "updatedReplicas": updated}}


@pytest.mark.parametrize("obj,ready", [
    (ds(2, 2, 2), True), (ds(2, 1, 2), False), (ds(2, 2, 1), False), (ds(0, 0, 0), False),
    (ds(2, 2, 2, gen=3, observed=2), False), (deploy(1, 1, 1), True), (deploy(1, 0, 1), False),
    (deploy(2, 2, 1), False),
])
def test_workload_readiness(obj, ready):
    assert workload_ready(obj)[0] is ready


def test_rollout_gate_waits_then_passes_and_skips_optional_missing():
    clock = Clock()
    base = "/apis/apps/v1/namespaces/kube-system"
    api = FakeApi(clock, [], objects={
        f"{base}/daemonsets/cilium": [ds(2, 0, 2), ds(2, 1, 2), ds(2, 2, 2)],
        f"{base}/daemonsets/cilium-envoy": [KubeError(404, "not found")],
        f"{base}/deployments/cilium-operator": [deploy(1, 1, 1)],
    })
    workloads = [
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium", "optional": False},
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium-envoy", "optional": True},
        {"kind": "Deployment", "namespace": "kube-system", "name": "cilium-operator", "optional": False},
    ]
    result = wait_for_rollouts(api, "us", workloads, clock=clock)
    assert result.attempts == 5
    assert [w[0] for w in api.watches] == [f"{base}/daemonsets?fieldSelector=metadata.name%3Dcilium"] * 2


def test_rollout_gate_times_out_naming_workload_and_cluster():
    clock = Clock()
    base = "/apis/apps/v1/namespaces/kube-system"
    api = FakeApi(clock, [], objects={f"{base}/deployments/clustermesh-apiserver": [deploy(1, 0, 1)]})
    with pytest.raises(GateError) as err:
        wait_for_rollouts(api, "eu", [{"kind": "Deployment", "namespace": "kube-system",
                                        "name": "clustermesh-apiserver"}], timeout=100, clock=clock)
    assert "clustermesh-apiserver" in str(err.value) and "cluster 'eu'" in str(err.value)
    assert "0/1 replicas available" in str(err.value)


def test_gate_provider_diff_updates_on_new_revision_and_replaces_on_new_target():
    from components.gate_provider import MetalLBWebhookGateProvider, RolloutGateProvider

    olds = {"kubeconfig": "k", "cluster": "us", "workloads": [{"name": "cilium"}], "revision": 1, "timeout": 900}
    diff = RolloutGateProvider().diff("us-rollout", olds, dict(olds, revision=2))
    assert diff.changes is True and diff.replaces == []
    diff = RolloutGateProvider().diff("us-rollout", olds, dict(olds, kubeconfig="other"))
    assert diff.replaces == ["kubeconfig"]
    assert RolloutGateProvider().diff("us-rollout", olds, dict(olds)).changes is False
    mlb = {"kubeconfig": "k", "cluster": "us", "pool": {"spec": {"addresses": ["a-b"]}}, "chart_version": "0.15.3"}
    diff = MetalLBWebhookGateProvider().diff("us-metallb-webhook", mlb, dict(mlb, chart_version="0.15.4"))
    assert diff.changes is True and diff.replaces == []


def test_gate_update_waits_again(monkeypatch):
    from components import gate_provider

    calls = []

    class FakeClient:
        def __init__(self, kubeconfig):
            calls.append(("client", kubeconfig))

        def close(self):
            calls.append(("close",))

    monkeypatch.setattr(gate_provider, "KubeClient", FakeClient)
    monkeypatch.setattr(gate_provider, "wait_for_rollouts",
                        lambda client, cluster, workloads, timeout: calls.append(("wait", cluster)) or
                        __import__("stacks.gates", fromlist=["GateResult"]).GateResult(attempts=2, waited=1.0))
    news = {"kubeconfig": "k", "cluster": "eu", "workloads": [], "revision": 3, "timeout": 10}
    result = gate_provider.RolloutGateProvider().update("eu-rollout", dict(news, revision=2), news)
    assert ("wait", "eu") in calls and ("close",) in calls
    assert result.outs["attempts"] == 2 and result.outs["revision"] == 3
