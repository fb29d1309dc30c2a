"""One kind cluster running Cilium (kube-proxy replaced), from kindmesh's components alone.

No kindmesh config and no stack plan: the components take typed args, the pure helpers
``kind_cilium_values`` (Cilium values for kind) and ``network_layout``/``pool_for`` (node
addresses in the lower half of the docker subnet, MetalLB pools at the top of it) fill them.
    pip install -r requirements.txt && pulumi up      (see README.md here)
"""

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from kindmesh.components import (
    CiliumRelease,
    CiliumReleaseArgs,
    ClusterTarget,
    KindCluster,
    KindClusterArgs,
    MeshCA,
    MeshCAArgs,
    MetalLBPool,
    MetalLBPoolArgs,
)
from kindmesh.core.planner import network_layout, pool_for
from kindmesh.core.render import kind_cilium_values

NAME = "solo"
# Optional, for hosts without the public chart repositories: `pulumi config set --path
# kindmesh:charts.cilium /path/to/charts` (a directory of <chart>-<version>.tgz archives).
charts = pulumi.Config("kindmesh").get_object("charts") or {}
chart_repos = {"cilium": {"repo": charts["cilium"]} if "cilium" in charts else {},
               "metallb": {"repo": charts["metallb"]} if "metallb" in charts else {}}
SUBNET = "172.27.0.0/24"
GATEWAY = "172.27.0.1"  # the subnet's first address
nodes, _pools = network_layout(SUBNET)  # docker's ip_range keeps node IPs out of the pools
first, last = pool_for(SUBNET, 8, 1)  # cluster id 1's pool: 8 addresses at the top of the subnet
network = docker.Network(
    "network",
    name=f"{NAME}-net",
    # the gateway given, as Docker would pick it: Docker reports the one it picks, and a refresh
    # would otherwise see ipamConfigs change (every field of a docker network forces a replace)
    ipam_configs=[docker.NetworkIpamConfigArgs(subnet=SUBNET, ip_range=str(nodes), gateway=GATEWAY)],
    opts=pulumi.ResourceOptions(provider=docker.Provider("docker")),
)
kind = KindCluster(NAME, KindClusterArgs(
    kind_name=NAME, network=f"{NAME}-net", workers=0,
    pod_subnet="10.40.0.0/16", service_subnet="10.41.0.0/20", after=[network],
))
provider = k8s.Provider(f"{NAME}-k8s", kubeconfig=kind.kubeconfig)
target = ClusterTarget(provider=provider, kubeconfig=kind.kubeconfig, deleted_with=kind.cluster)
ca = MeshCA("ca", MeshCAArgs(common_name=f"{NAME} ClusterMesh CA"))
cilium = CiliumRelease(NAME, CiliumReleaseArgs(
    target=target,
    cluster_name=NAME,
    cluster_id=1,
    # the clustermesh-apiserver gets the pool's first address (MetalLB hands it out)
    values=kind_cilium_values(control_plane=f"{NAME}-control-plane", mesh_ip=str(first)),
    ca_cert_b64=ca.cert_b64,
    ca_key_b64=ca.key_b64,
    **chart_repos["cilium"],
))
metallb = MetalLBPool(NAME, MetalLBPoolArgs(
    # installed while Cilium rolls out; its webhook gate waits for Cilium (the CNI)
    target=target, cluster_name=NAME, addresses=[f"{first}-{last}"], after=kind.ready, cni=cilium.ready,
    reserved=[str(first)],  # the mesh IP: never handed to another LoadBalancer Service
    **chart_repos["metallb"],
))
pulumi.export("kubeconfig", kind.kubeconfig)
pulumi.export("ciliumRevision", cilium.revision)
