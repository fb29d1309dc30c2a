"""Two kind clusters joined by Cilium ClusterMesh, MetalLB and the demo: the Mesh component.

    pip install -r requirements.txt && pulumi up      (see README.md here)
"""

import pulumi

from kindmesh.components import Mesh, MeshArgs

config = {
    "clusters": [{"name": "east", "id": 1, "workers": 0}, {"name": "west", "id": 2, "workers": 0}],
    "network": {"subnet": "172.26.0.0/24", "poolSize": 8},
}
# Optional, for hosts without the public chart repositories: `pulumi config set --path
# kindmesh:charts.cilium /path/to/charts` (a directory of <chart>-<version>.tgz archives).
charts = pulumi.Config("kindmesh").get_object("charts")
if charts:
    config["charts"] = charts
mesh = Mesh("lab", MeshArgs(config=config))
pulumi.export("kubeconfigs", mesh.kubeconfigs)
pulumi.export("peers", mesh.peers)
