"""Readiness gates: MetalLB webhook and rollout waits, with a fake API and clock."""

from __future__ import annotations

import pytest

from kindmesh.core.planner import load_plan
from kindmesh.core.render import ip_address_pool
from kindmesh.deploy.gates import (
    Backoff,
    Clock,
    GateError,
    is_auth_failure,
    is_retryable,
    wait_for_metallb,
    wait_for_metallb_webhook,
    wait_for_rollouts,
    workload_ready,
)
from kindmesh.deploy.kubeapi import KubeError, Response
from tests.helpers import stack_raw

REFUSED = ('Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": '
           'failed to call webhook: Post "https://metallb-webhook-service.metallb-system.svc:443/'
           'validate-metallb-io-v1beta1-ipaddresspool?timeout=10s": dial tcp 10.1.134.7:443: '
           "connect: connection refused")


class FakeTime:
    """A fake clock: ``sleep`` advances it; ``random`` is fixed (mid-jitter) unless given."""

    def __init__(self, rand=0.5, request_cost=0.0):
        self.now = 0.0
        self.slept = []
        self.rand = rand
        self.request_cost = request_cost

    def sleep(self, seconds):
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += seconds

    def clock(self):
        return Clock(now=lambda: self.now, sleep=self.sleep, random=lambda: self.rand)


class FakeApi:
    """Answers in order; the watch either runs to its bound, fails at once, or sees a change."""

    def __init__(self, time_, answers, objects=None, watch="bound"):
        self.time = time_
        self.answers = list(answers)
        self.objects = objects or {}
        self.posts = []
        self.watches = []
        self.calls = []  # (time, what)
        self.watch = watch

    def dry_run_create(self, path, obj, *, timeout):
        self.calls.append((self.time.now, "POST"))
        assert 0 < timeout <= 30
        self.posts.append((path, obj))
        self.time.now += self.time.request_cost
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, KubeError):
            raise answer
        return Response(201, obj)

    def get(self, path, *, timeout):
        self.calls.append((self.time.now, "GET"))
        assert 0 < timeout <= 30
        seq = self.objects[path]
        obj = seq.pop(0) if len(seq) > 1 else seq[0]
        if isinstance(obj, KubeError):
            raise obj
        return Response(200, obj)

    def wait_for_change(self, path, timeout):
        self.calls.append((self.time.now, "WATCH"))
        self.watches.append((path, timeout))
        if self.watch == "fail":
            raise KubeError(503, "the server is currently unable to handle the request")
        if self.watch == "change":
            return True
        self.time.now += timeout  # nothing changed: the watch ran to its bound
        return False


@pytest.fixture
def pool():
    plan = load_plan(stack_raw("dev"), stack="dev")
    return ip_address_pool(plan, plan.clusters[0])


def test_webhook_gate_retries_until_the_webhook_answers(pool):
    t = FakeTime()
    api = FakeApi(t, [KubeError(500, REFUSED), KubeError(500, REFUSED), "ok"])
    result = wait_for_metallb_webhook(api, "us", pool, first_backoff=2, clock=t.clock())
    assert result.attempts == 3
    assert api.posts[0][0] == "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"
    assert api.posts[0][1] == pool
    # it waited on the webhook's endpoints, with growing, jittered bounds (rand=0.5: 3/4 of each bound)
    assert all("kubernetes.io%2Fservice-name%3Dmetallb-webhook-service" in w[0] for w in api.watches)
    assert [w[1] for w in api.watches] == [1.5, 3.0]


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_webhook_gate_gives_up_at_its_deadline_with_the_last_state(pool, rand):
    t = FakeTime(rand=rand)
    api = FakeApi(t, [KubeError(500, REFUSED)])
    with pytest.raises(GateError) as err:
        wait_for_metallb_webhook(api, "eu", pool, timeout=60, clock=t.clock())
    text = str(err.value)
    assert "cluster 'eu'" in text and "connection refused" in text and "limit 60s" in text
    assert t.now == pytest.approx(60)  # the deadline bounds the whole wait, the last pause included
    # 1, 2, 4, 8, 16, 20, 20 … (each in [d/2, d]): a dozen probes or fewer, never hundreds
    assert 4 <= len(api.posts) <= 13


def test_a_fast_failing_api_is_not_hammered(pool):
    """503 at once on every probe and every watch: the rest of each backoff bound is slept."""
    t = FakeTime(rand=0.0)  # the shortest jitter: the worst case for request rate
    api = FakeApi(t, [KubeError(503, "the server is currently unable to handle the request")], watch="fail")
    with pytest.raises(GateError) as err:
        wait_for_metallb_webhook(api, "us", pool, timeout=300, first_backoff=1, max_backoff=20, clock=t.clock())
    assert t.now == pytest.approx(300)
    assert "HTTP 503" in str(err.value) and "waiting on a watch: HTTP 503" in str(err.value)
    posts = [at for at, what in api.calls if what == "POST"]
    assert len(posts) <= 35  # 300 s at >= 10 s apart once backed off, plus the ramp
    assert all(b - a >= 0.5 for a, b in zip(posts, posts[1:], strict=False))
    late = [at for at in posts if at >= 60]
    assert len(late) <= (300 - 60) / 10 + 1  # after the ramp: at least cap/2 between probes


def test_a_watch_that_fires_at_once_still_leaves_a_minimum_pause(pool):
    t = FakeTime()
    api = FakeApi(t, [KubeError(500, REFUSED)], watch="change")
    with pytest.raises(GateError):
        wait_for_metallb_webhook(api, "us", pool, timeout=10, clock=t.clock())
    assert len(api.posts) <= 21  # 10 s / 0.5 s


def test_backoff_is_exponential_bounded_and_jittered():
    lows = Backoff(1, 20, lambda: 0.0)
    highs = Backoff(1, 20, lambda: 0.999999)
    assert [lows.delay() for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert [round(highs.delay()) for _ in range(7)] == [1, 2, 4, 8, 16, 20, 20]


def test_a_denied_pool_fails_at_once(pool):
    t = FakeTime()
    denied = KubeError(403, 'admission webhook "ipaddresspoolvalidationwebhook.metallb.io" denied the request: '
                            "CIDR 172.30.255.239/32 overlaps with CIDR 172.30.255.239/32")
    api = FakeApi(t, [denied])
    with pytest.raises(GateError, match="rejected the address pool.*overlaps"):
        wait_for_metallb_webhook(api, "us", pool, clock=t.clock())
    assert len(api.posts) == 1 and api.watches == []


@pytest.mark.parametrize("err", [KubeError(401, "Unauthorized"),
                                 KubeError(403, 'ipaddresspools.metallb.io is forbidden: User "x" cannot create')])
def test_auth_failures_are_not_blamed_on_metallb(pool, err):
    t = FakeTime()
    api = FakeApi(t, [err])
    with pytest.raises(GateError) as raised:
        wait_for_metallb_webhook(api, "us", pool, clock=t.clock())
    assert "API server of cluster 'us'" in str(raised.value) and "MetalLB in" not in str(raised.value)
    assert len(api.posts) == 1


def test_already_existing_pool_counts_as_admitted(pool):
    t = FakeTime()
    api = FakeApi(t, [KubeError(409, 'ipaddresspools.metallb.io "kindmesh-pool" already exists')])
    assert wait_for_metallb_webhook(api, "us", pool, clock=t.clock()).attempts == 1


def test_retryable_classification():
    assert is_retryable(KubeError(500, REFUSED))
    assert is_retryable(KubeError(500, "etcdserver: leader changed"))
    assert is_retryable(KubeError(0, "cannot reach https://127.0.0.1:1234"))
    assert is_retryable(KubeError(404, "the server could not find the requested resource"))
    for code in (429, 502, 503, 504):
        assert is_retryable(KubeError(code, "x"))
    assert not is_retryable(KubeError(422, "IPAddressPool is invalid"))
    assert not is_retryable(KubeError(403, "forbidden"))
    assert is_auth_failure(KubeError(401, "Unauthorized"))
    assert not is_auth_failure(KubeError(403, 'admission webhook "x" denied the request: overlaps'))


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
    t = FakeTime()
    base = "/apis/apps/v1/namespaces/kube-system"
    api = FakeApi(t, [None], objects={
        f"{base}/daemonsets/cilium": [ds(2, 0, 2), ds(2, 1, 2), ds(2, 2, 2)],
        f"{base}/daemonsets/cilium-envoy": [KubeError(404, "not found")],
        f"{base}/deployments/cilium-operator": [deploy(1, 1, 1)],
    })
    workloads = [
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium", "optional": False},
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium-envoy", "optional": True},
        {"kind": "Deployment", "namespace": "kube-system", "name": "cilium-operator", "optional": False},
    ]
    result = wait_for_rollouts(api, "us", workloads, clock=t.clock())
    assert result.attempts == 5
    assert [w[0] for w in api.watches] == [f"{base}/daemonsets?fieldSelector=metadata.name%3Dcilium"] * 2


def test_rollout_gate_times_out_naming_workload_and_cluster():
    t = FakeTime()
    base = "/apis/apps/v1/namespaces/kube-system"
    api = FakeApi(t, [None], objects={f"{base}/deployments/clustermesh-apiserver": [deploy(1, 0, 1)]})
    with pytest.raises(GateError) as err:
        wait_for_rollouts(api, "eu", [{"kind": "Deployment", "namespace": "kube-system",
                                        "name": "clustermesh-apiserver"}], timeout=100, clock=t.clock())
    assert "clustermesh-apiserver" in str(err.value) and "cluster 'eu'" in str(err.value)
    assert "last seen: 0/1 replicas available" in str(err.value)
    assert t.now == pytest.approx(100)


def test_one_deadline_covers_every_workload():
    t = FakeTime()
    base = "/apis/apps/v1/namespaces/kube-system"
    api = FakeApi(t, [None], objects={f"{base}/daemonsets/cilium": [ds(2, 1, 2)] * 3 + [ds(2, 2, 2)],
                                      f"{base}/deployments/cilium-operator": [deploy(1, 0, 1)]})
    with pytest.raises(GateError, match="cilium-operator.*limit 30s"):
        wait_for_rollouts(api, "us", [{"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium"},
                                      {"kind": "Deployment", "namespace": "kube-system", "name": "cilium-operator"}],
                          timeout=30, clock=t.clock())
    assert t.now == pytest.approx(30)


def test_rollout_gate_survives_odd_objects():
    assert workload_ready({"kind": "DaemonSet", "status": "weird", "metadata": None}) == (False, "no pods scheduled yet")
    assert workload_ready({"kind": "Pod"})[0] is False


METALLB = [{"kind": "Deployment", "namespace": "metallb-system", "name": "metallb-controller"},
           {"kind": "DaemonSet", "namespace": "metallb-system", "name": "metallb-speaker"}]
MBASE = "/apis/apps/v1/namespaces/metallb-system"


def test_metallb_gate_waits_for_controller_and_speakers_then_the_webhook(pool):
    """The release is installed without Helm's wait: the gate covers what that wait did."""
    t = FakeTime()
    api = FakeApi(t, [KubeError(500, REFUSED), "ok"], objects={
        f"{MBASE}/deployments/metallb-controller": [deploy(1, 0, 1), deploy(1, 1, 1)],
        f"{MBASE}/daemonsets/metallb-speaker": [ds(2, 1, 2), ds(2, 2, 2)],
    })
    result = wait_for_metallb(api, "us", pool, METALLB, clock=t.clock())
    kinds = [what for _, what in api.calls if what != "WATCH"]
    assert kinds == ["GET", "GET", "GET", "GET", "POST", "POST"]  # rolled out first, then admitted
    assert result.attempts == 4 + 2


def test_metallb_gate_has_one_deadline_for_rollout_and_webhook(pool):
    t = FakeTime()
    api = FakeApi(t, [KubeError(500, REFUSED)], objects={
        f"{MBASE}/deployments/metallb-controller": [deploy(1, 0, 1)] * 6 + [deploy(1, 1, 1)],
        f"{MBASE}/daemonsets/metallb-speaker": [ds(1, 1, 1)],
    })
    with pytest.raises(GateError, match="did not accept the address pool .*limit"):
        wait_for_metallb(api, "us", pool, METALLB, timeout=120, clock=t.clock())
    assert t.now == pytest.approx(120)
    t2 = FakeTime()
    never = FakeApi(t2, ["ok"], objects={f"{MBASE}/deployments/metallb-controller": [deploy(1, 0, 1)]})
    with pytest.raises(GateError, match="metallb-controller in cluster 'us' was not ready"):
        wait_for_metallb(never, "us", pool, METALLB[:1], timeout=60, clock=t2.clock())
    assert not never.posts and t2.now == pytest.approx(60)


def test_metallb_gate_without_workloads_is_the_webhook_gate(pool):
    t = FakeTime()
    api = FakeApi(t, ["ok"])
    assert wait_for_metallb(api, "us", pool, [], clock=t.clock()).attempts == 1
