"""A model of `pulumi up` wall time for a recorded stack graph.

Every custom resource is one step with a *nominal* duration (the table below says where
each number comes from). A step starts when everything the engine waits on is done and
its provider process has a free slot:

* edges: ``dependencies``, the parent (a custom parent must exist first), the provider
  reference (a provider is configured before it serves), and ``deletedWith``; a
  dependency on a component is a dependency on all of its descendants (as the engine does);
* concurrency: the engine runs at most ``--parallel`` steps at once (``simulate(parallel=)``;
  pulumi's default is 4 × GOMAXPROCS, `pulumi/pkg/cmd/pulumi/operations/up.go`, so 8 on a
  2-CPU host; ``make up`` passes 64 through ``PULUMI_PARALLEL``); the
  Python dynamic-provider host serves *all* dynamic resources of a stack with a gRPC
  server of 4 worker threads (``pulumi/dynamic/__main__.py``); the command provider runs
  each command in its own process; the Kubernetes, Docker and TLS providers are Go
  plugins without such a cap.

What the model leaves out, on purpose: host contention (CPU, disk and network shared by
N kind clusters starting at once on one machine), image pull bandwidth, and the engine's
own overhead per step. Those only a Docker host measures (``make e2e``); the model shows
what the *program's graph* imposes.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DYNAMIC = "pulumi-python:dynamic:Resource"
COMMAND = "command:local:Command"

# Provider process -> how many operations it runs at once (None: unbounded).
POOLS: dict[str, int | None] = {
    "dynamic": 4,  # pulumi/dynamic/__main__.py: grpc.server(ThreadPoolExecutor(max_workers=4))
    "command": None,  # one OS process per command
    "kubernetes": None,
    "docker": None,
    "tls": None,
    "engine": None,
}


@dataclass(frozen=True)
class Rule:
    type_: str
    name: str  # regex on the resource name
    seconds: float
    source: str


# First match wins. Durations are nominal single-step figures on an idle 4-core host.
RULES: tuple[Rule, ...] = (
    Rule("docker:index/network:Network", r".*", 1, "estimate: `docker network create` is sub-second"),
    Rule(COMMAND, r".*host-images(-pull)?$", 90, "estimate: ~10 images, ~600 MB, pulled (and saved) once"),
    Rule(COMMAND, r".*-kind-cluster$", 60,
         "kind docs: a cluster in ~1 min (was 75 s with the image load, now its own step)"),
    Rule(COMMAND, r".*-image-load$", 15,
         "estimate: the image-load share of the former 75 s create+load figure (75 - 60)"),
    Rule(DYNAMIC, r".*-kind$", 1, "quick `kind get kubeconfig/nodes` and `docker inspect` calls"),
    Rule(DYNAMIC, r".*-kind-present$", 0, "a token: its create makes no call (its read, on refresh, one)"),
    Rule("kubernetes:helm.sh/v3:Release", r".*-cilium$", 20, "estimate: chart pull + install, no --wait"),
    Rule(COMMAND, r".*-cilium-rollout$", 120, "estimate: Cilium agents/operator ready (tutorials sleep 240)"),
    Rule("kubernetes:helm.sh/v3:Release", r".*-metallb$", 20,
         "as the Cilium release: chart pull + install, no --wait (was 45 s with Helm's wait)"),
    Rule(COMMAND, r".*-metallb-webhook$", 45,
         "the former figures split: Helm's 45 s wait minus the 20 s install (controller and speakers "
         "start once the CNI is up) + 20 s until the controller serves the webhook"),
    Rule(COMMAND, r".*-lb-ips$", 5, "estimate: MetalLB assigns the planned IPs once the pools exist"),
    Rule("kubernetes:apps/v1:Deployment", r".*", 20, "estimate: pull-free rollout of a small pod"),
    Rule("kubernetes:core/v1:Service", r".*", 20,
         "the Kubernetes provider waits until a Service with a selector has ready endpoints: its pods' "
         "rollout, as a Deployment (seen through the engine: the timing scenario)"),
    Rule(COMMAND, r"^verify$", 90, "estimate: verification with failover round-trip"),
    Rule(COMMAND, r".*kubeconfig.*", 1, "writes a file"),
    Rule("", r".*", 1, "default: one API call"),
)


def rule_for(type_: str, name: str) -> Rule:
    for rule in RULES:
        if (rule.type_ in ("", type_)) and re.fullmatch(rule.name, name):
            return rule
    raise AssertionError("unreachable: the last rule matches everything")


def pool_for(type_: str) -> str:
    if type_ == DYNAMIC:
        return "dynamic"
    if type_.startswith("command:"):
        return "command"
    for prefix in ("kubernetes", "docker", "tls"):
        if type_.startswith(f"{prefix}:") or type_ == f"pulumi:providers:{prefix}":
            return prefix
    return "engine"


@dataclass
class Step:
    urn: str
    name: str
    type_: str
    seconds: float
    pool: str
    waits_on: set[str]


def steps(resources: Iterable[Any]) -> dict[str, Step]:
    """Steps (custom resources) with the custom resources each one waits on."""
    res = list(resources)
    by_urn = {r.urn: r for r in res}
    children: dict[str, list[str]] = {}
    for r in res:
        children.setdefault(r.parent, []).append(r.urn)

    def customs(urn: str) -> set[str]:
        """A custom resource is itself; a component is all of its custom descendants."""
        node = by_urn.get(urn)
        if node is None:
            return set()
        if node.custom:
            return {urn}
        out: set[str] = set()
        for child in children.get(urn, []):
            out |= customs(child)
        return out

    out: dict[str, Step] = {}
    for r in res:
        if not r.custom:
            continue
        edges = list(r.dependencies) + [r.deleted_with]
        if r.parent in by_urn and by_urn[r.parent].custom:
            edges.append(r.parent)
        provider = (r.provider or "").split("::")
        if r.provider:
            edges.append("::".join(provider[:-1]) if len(provider) > 1 and provider[-1] else r.provider)
        waits: set[str] = set()
        for e in edges:
            if e:
                waits |= customs(e)
        waits.discard(r.urn)
        rule = rule_for(r.type, r.name)
        out[r.urn] = Step(r.urn, r.name, r.type, rule.seconds, pool_for(r.type), waits)
    return out


@dataclass
class Schedule:
    total: float
    finish: dict[str, float]
    critical: list[str]  # names on the longest chain, first to last
    busiest_queue: dict[str, float]  # pool -> longest time a ready step waited for a slot


def simulate(all_steps: dict[str, Step], pools: dict[str, int | None] | None = None,
             parallel: int | None = None) -> Schedule:
    """Event-driven schedule: a step starts when ready, its provider has a free slot and the
    engine has one (``parallel``: ``pulumi up --parallel``, None = unbounded); the longest-ready
    step first. A wait for the engine's slots is reported as the pool ``--parallel``."""
    limits = dict(POOLS if pools is None else pools)
    remaining = {u: set(s.waits_on) & set(all_steps) for u, s in all_steps.items()}
    dependents: dict[str, list[str]] = {u: [] for u in all_steps}
    for u, deps in remaining.items():
        for d in deps:
            dependents[d].append(u)
    busy: dict[str, int] = {p: 0 for p in limits}
    queues: dict[str, list[tuple[float, str]]] = {p: [] for p in limits}
    events: list[tuple[float, str]] = []  # (finish time, urn)
    ready_at: dict[str, float] = {}
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    blocker: dict[str, str | None] = {}
    waited: dict[str, float] = {p: 0.0 for p in limits}
    held: set[str] = set()  # ready, a provider slot free, but the engine's slots all taken
    running = 0

    def start_ready(now: float) -> None:
        nonlocal running
        while True:
            open_pools = [p for p, q in queues.items() if q and (limits.get(p) is None or busy[p] < (limits[p] or 0))]
            if not open_pools:
                return
            if parallel is not None and running >= parallel:
                for p in open_pools:
                    held.update(urn for _, urn in queues[p])
                return
            pool = min(open_pools, key=lambda p: queues[p][0])
            _, urn = heapq.heappop(queues[pool])
            busy[pool] += 1
            running += 1
            start[urn] = now
            key = "--parallel" if urn in held else pool
            waited[key] = max(waited.get(key, 0.0), now - ready_at[urn])
            heapq.heappush(events, (now + all_steps[urn].seconds, urn))

    def make_ready(urn: str, now: float) -> None:
        ready_at[urn] = now
        pool = all_steps[urn].pool
        queues.setdefault(pool, [])
        busy.setdefault(pool, 0)
        limits.setdefault(pool, None)
        waited.setdefault(pool, 0.0)
        heapq.heappush(queues[pool], (now, urn))

    for urn, deps in remaining.items():
        if not deps:
            blocker[urn] = None
            make_ready(urn, 0.0)
    start_ready(0.0)
    now = 0.0
    while events:
        now, urn = heapq.heappop(events)
        finish[urn] = now
        pool = all_steps[urn].pool
        busy[pool] -= 1
        running -= 1
        for d in dependents[urn]:
            remaining[d].discard(urn)
            if not remaining[d]:
                blocker[d] = urn
                make_ready(d, now)
        start_ready(now)
    if len(finish) != len(all_steps):
        raise ValueError("the graph has a cycle or an unreachable step")
    last = max(finish, key=lambda u: finish[u]) if finish else None
    chain: list[str] = []
    while last is not None:
        chain.append(all_steps[last].name)
        last = blocker.get(last)
    return Schedule(total=now, finish=finish, critical=list(reversed(chain)), busiest_queue=waited)
