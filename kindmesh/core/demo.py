"""Demo workloads and policies (pure manifests) and what verification should expect.

Per cluster, in namespace ``kindmesh-demo``:

* ``echo``: an HTTP backend whose reply names its cluster (``kindmesh-demo cluster=<name>``),
  behind two global Services: ``echo`` carries the cluster's configured
  ``service.cilium.io/shared`` / ``service.cilium.io/affinity``; ``echo-global`` is
  always global, shared and without affinity (the "reaches every meshed cluster" probe).
* ``client``: a curl pod to call them from; ``intruder``: the same, but never allowed
  (only deployed with policies, to prove denied traffic is dropped).
* with ``demo.policy``: a default-deny CiliumNetworkPolicy that still allows DNS to
  kube-dns, and allow rules client -> echo that select the permitted clusters with
  ``io.cilium.k8s.policy.cluster`` (required for cross-cluster matches since 1.19):
  any cluster this one is meshed with.

Pure module: no ``pulumi`` import.

May import: model, images, render.
"""

from __future__ import annotations

from typing import Any

from kindmesh.core.images import Image
from kindmesh.core.model import ClusterPlan, StackPlan
from kindmesh.core.render import cilium_values, relay_access

NAMESPACE = "kindmesh-demo"
ECHO_PORT = 5678
SERVICES = ("echo", "echo-global")
REPLY_PREFIX = "kindmesh-demo cluster="
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
A_GLOBAL = "service.cilium.io/global"
A_SHARED = "service.cilium.io/shared"
A_AFFINITY = "service.cilium.io/affinity"


def _image(plan: StackPlan, ref: str, cluster: ClusterPlan | None = None) -> str:
    img = Image.parse(ref)
    loaded = plan.config.kind.prepull and (cluster is None or cluster.source == "kind")
    return img.by_tag if loaded else img.pinned


def _labels(app: str) -> dict[str, str]:
    return {"app": app, "app.kubernetes.io/part-of": "kindmesh-demo"}


def _deployment(name: str, image: str, container: dict[str, Any]) -> dict[str, Any]:
    pod_security = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": _labels(name)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "securityContext": pod_security,
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "securityContext": security,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                          "limits": {"memory": "64Mi"}},
                            **container,
                        }
                    ],
                },
            },
        },
    }


def service_annotations(cluster: ClusterPlan, name: str) -> dict[str, str]:
    annotations = {A_GLOBAL: "true"}
    if name == "echo":
        annotations[A_SHARED] = "true" if cluster.demo.shared else "false"
        if cluster.demo.affinity:
            annotations[A_AFFINITY] = cluster.demo.affinity
    else:
        annotations[A_SHARED] = "true"
    return annotations


def manifests(plan: StackPlan, cluster: ClusterPlan) -> list[dict[str, Any]]:
    """Every demo object for one cluster, namespace first."""
    demo = plan.config.demo
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "kindmesh-demo"}}},
        _deployment("echo", _image(plan, demo.backend_image, cluster), {
            "args": [f"-listen=:{ECHO_PORT}", f"-text={REPLY_PREFIX}{cluster.name}"],
            "ports": [{"name": "http", "containerPort": ECHO_PORT}],
            "readinessProbe": {"httpGet": {"path": "/", "port": ECHO_PORT}, "periodSeconds": 2},
        }),
        _deployment("client", _image(plan, demo.client_image, cluster), {"command": ["tail", "-f", "/dev/null"]}),
    ]
    for name in SERVICES:
        objs.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": _labels("echo"),
                         "annotations": service_annotations(cluster, name)},
            "spec": {"selector": {"app": "echo"},
                     "ports": [{"name": "http", "port": 80, "targetPort": ECHO_PORT, "protocol": "TCP"}]},
        })
    if demo.policy:
        objs.append(_deployment("intruder", _image(plan, demo.client_image, cluster), {"command": ["tail", "-f", "/dev/null"]}))
        objs += policies(plan, cluster)
    return objs


def policies(plan: StackPlan, cluster: ClusterPlan) -> list[dict[str, Any]]:
    # Since Cilium 1.19 (policyDefaultLocalCluster) a selector without the cluster label
    # matches the local cluster only. "Exists" admits every cluster whose identities this
    # cluster knows - itself and its mesh peers, exactly - and keeps the policy stable when
    # clusters are added (the mesh config, not each policy, says who is a peer).
    in_mesh = {"key": CLUSTER_LABEL, "operator": "Exists"}
    port = [{"ports": [{"port": str(ECHO_PORT), "protocol": "TCP"}]}]
    dns = {
        "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system",
                                         "k8s:k8s-app": "kube-dns"}}],
        "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}],
    }
    return [
        _cnp("default-deny", "Deny everything in the demo namespace except DNS to kube-dns",
             {"endpointSelector": {}, "ingress": [{}], "egress": [dns]}),
        _cnp("echo-from-client", "Backends accept the demo client from this cluster and its mesh peers",
             {"endpointSelector": {"matchLabels": {"app": "echo"}},
              "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}, "matchExpressions": [in_mesh]}],
                           "toPorts": port}]}),
        _cnp("client-to-echo", "The demo client may call backends in this cluster and its mesh peers",
             {"endpointSelector": {"matchLabels": {"app": "client"}},
              "egress": [{"toEndpoints": [{"matchLabels": {"app": "echo"}, "matchExpressions": [in_mesh]}],
                          "toPorts": port}]}),
    ]


def _cnp(name: str, description: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "kindmesh-demo"}},
        "spec": {"description": description, **spec},
    }


def expected_backends(plan: StackPlan, cluster: ClusterPlan, service: str) -> list[str]:
    """Clusters whose backends may answer ``service`` when called from ``cluster``."""
    peers = [plan.cluster(p) for p in cluster.peers]
    if service == "echo-global":
        return sorted({cluster.name, *(p.name for p in peers)})
    shared_remotes = sorted(p.name for p in peers if p.demo.shared)
    affinity = cluster.demo.affinity or "none"
    if affinity == "local":
        return [cluster.name]
    if affinity == "remote" and shared_remotes:
        return shared_remotes
    return sorted({cluster.name, *shared_remotes})


def verification_spec(plan: StackPlan) -> dict[str, Any]:
    """What ``make verify`` checks, exported as a stack output (no secrets)."""
    return {
        "namespace": NAMESPACE,
        "policy": plan.config.demo.policy,
        "demo": plan.config.demo.enabled,
        "clusters": [
            {
                "name": c.name,
                "source": c.source,
                "context": c.context,
                "peers": list(c.peers),
                "affinity": c.demo.affinity or "none",
                "expect": {s: expected_backends(plan, c, s) for s in SERVICES},
                "failover": sorted(p for p in c.peers if plan.cluster(p).demo.shared),
                # how `make verify` reads flows through the Hubble Relay (None: no relay)
                "relay": relay_access(cilium_values(plan, c)),
            }
            for c in plan.clusters
        ],
    }
