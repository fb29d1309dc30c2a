"""How long the world's slow operations take: the model's figures, scaled.

By default the world is as fast as it can be (a simulated cluster starts in seconds, pods are
Ready as soon as they are scheduled). With ``KINDMESH_WORLD_TIME_SCALE=s`` (the ``timing``
scenario sets 0.1), the operations that dominate a real `up` take bench/model.py's nominal
figure × s, so the engine's measured `up` can be set beside the model at the same scale:

| operation (who plays it) | model rule | at 0.1 |
|---|---|---|
| ``kind create cluster`` (fake kind: at least this long in all) | ``*-kind-cluster`` 60 s | 6 s |
| ``docker pull`` of one image (fake docker CLI) | ``host-images-pull`` 90 s / 10 images | 0.9 s |
| ``kind load`` of one image (fake kind) | ``*-image-load`` 15 s / 10 images | 0.15 s |
| a Cilium pod Ready after it is scheduled (kwok stage delay) | ``*-cilium-rollout`` 120 s | 12 s |
| a MetalLB pod Ready (kwok; the webhook is served once the controller is) | ``*-metallb-webhook`` 45 s | 4.5 s |
| any other pod Ready (kwok) | Deployment 20 s | 2 s |

The model counts ten images for the pre-pull ("~10 images, ~600 MB"); the per-image figures
divide its step by that. A simulated duration is how long the *world* takes, never a wait of
the program: the program still waits on conditions only.
"""

from __future__ import annotations

import os
import time

from bench.model import COMMAND, rule_for

SCALE_ENV = "KINDMESH_WORLD_TIME_SCALE"
MODEL_IMAGES = 10  # bench/model.py: host-images-pull "~10 images"


def scale() -> float:
    try:
        value = float(os.environ.get(SCALE_ENV) or 0)
    except ValueError:
        return 0.0
    return max(value, 0.0)


def seconds(what: str) -> float:
    """The world's duration of one operation (0 when the world is not timed)."""
    s = scale()
    if not s:
        return 0.0
    figures = {
        "kind create": rule_for(COMMAND, "x-kind-cluster").seconds,
        "image pull": rule_for(COMMAND, "host-images-pull").seconds / MODEL_IMAGES,
        "image load": rule_for(COMMAND, "x-image-load").seconds / MODEL_IMAGES,
        "cilium ready": rule_for(COMMAND, "x-cilium-rollout").seconds,
        "metallb ready": rule_for(COMMAND, "x-metallb-webhook").seconds,
        "pod ready": rule_for("kubernetes:apps/v1:Deployment", "x").seconds,
    }
    return figures[what] * s


def take(what: str, started: float, count: int = 1) -> None:
    """Let an operation that began at ``started`` (monotonic) last its simulated duration."""
    left = started + seconds(what) * count - time.monotonic()
    if left > 0:
        time.sleep(left)


def _go_duration(s: float) -> str:
    return f"{int(round(s * 1000))}ms"


def kwok_pod_stages() -> str | None:
    """kwok's pod stages when the world is timed (None: kwok's own defaults, instant).

    Given any pod stage, kwok uses only those for pods (nodes keep its defaults), so this
    defines all three a pod goes through: Ready (after a delay by what the pod is: Cilium,
    MetalLB, anything else), a Job's pod completing, and deletion."""
    if not scale():
        return None
    delay = (
        'if ((.metadata.labels["app.kubernetes.io/part-of"] // "") == "cilium" '
        'or (.metadata.labels["k8s-app"] // "") == "cilium") '
        f'then "{_go_duration(seconds("cilium ready"))}" '
        'elif (.metadata.labels["app.kubernetes.io/name"] // "") == "metallb" '
        f'then "{_go_duration(seconds("metallb ready"))}" '
        f'else "{_go_duration(seconds("pod ready"))}" end'
    )
    ready_status = """
{{ $now := Now }}
conditions:
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: true, restartCount: 0, started: true,
   state: {running: {startedAt: {{ $now | Quote }}}}}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: true, restartCount: 0,
   state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""
    done_status = """
{{ $now := Now }}
phase: Succeeded
containerStatuses:
{{ range .spec.containers }}
- {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: false, restartCount: 0, started: false,
   state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}}
{{ end }}
"""
    stages = [
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": "world-pod-ready"},
         "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                  "selector": {"matchExpressions": [
                      {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                      {"key": ".status.podIP", "operator": "DoesNotExist"}]},
                  "delay": {"durationMilliseconds": 0, "durationFrom": {"jq": {"expression": delay}}},
                  "next": {"statusTemplate": ready_status}}},
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": "world-job-pod-done"},
         "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                  "selector": {"matchExpressions": [
                      {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                      {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                      {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]}]},
                  "delay": {"durationMilliseconds": int(seconds("pod ready") * 1000)},
                  "next": {"statusTemplate": done_status}}},
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": "world-pod-delete"},
         "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                  "selector": {"matchExpressions": [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}]},
                  "next": {"finalizers": {"empty": True}, "delete": True}}},
    ]
    import yaml
    return yaml.safe_dump_all(stages, sort_keys=False)
