"""One kind cluster running Cilium (kube-proxy replaced), from kindmesh's components alone.

No kindmesh config and no planner: the components take typed args.
    pip install -r requirements.txt && pulumi up
"""

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from kindmesh.components.cilium_release import CiliumRelease, CiliumReleaseArgs
from kindmesh.components.cluster_target import ClusterTarget
from kindmesh.components.kind_cluster import KindCluster, KindClusterArgs
from kindmesh.components.mesh_ca import MeshCA, MeshCAArgs

NAME = "solo"
network = docker.Network(
    "network",
    name=f"{NAME}-net",
    ipam_configs=[docker.NetworkIpamConfigArgs(subnet="172.27.0.0/24")],
    opts=pulumi.ResourceOptions(provider=docker.Provider("docker")),
)
kind = KindCluster(NAME, KindClusterArgs(
    kind_name=NAME, network=f"{NAME}-net", workers=0,
    pod_subnet="10.40.0.0/16", service_subnet="10.41.0.0/20", after=[network],
))
provider = k8s.Provider(f"{NAME}-k8s", kubeconfig=kind.kubeconfig)
ca = MeshCA("ca", MeshCAArgs(common_name=f"{NAME} ClusterMesh CA"))
cilium = CiliumRelease(NAME, CiliumReleaseArgs(
    target=ClusterTarget(provider=provider, kubeconfig=kind.kubeconfig, deleted_with=kind.cluster),
    cluster_name=NAME,
    cluster_id=1,
    values={
        "kubeProxyReplacement": True,
        "k8sServiceHost": f"{NAME}-control-plane",
        "k8sServicePort": 6443,
        "ipam": {"mode": "kubernetes"},
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "operator": {"replicas": 1},
        "clustermesh": {"apiserver": {"service": {"type": "NodePort"}}},
    },
    ca_cert_b64=ca.cert_b64,
    ca_key_b64=ca.key_b64,
))
pulumi.export("kubeconfig", kind.kubeconfig)
pulumi.export("ciliumRevision", cilium.revision)
