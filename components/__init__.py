"""kindmesh.components: thin, reusable ComponentResources (typed args, no planner types).

The public components and their args, importable from here::

    from kindmesh.components import Mesh, MeshArgs

Each name is loaded from its module on first use (PEP 562), so importing one submodule
(the dynamic-provider host imports ``kindmesh.components.kind_provider``) does not import
every component and its provider SDKs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module (under kindmesh.components) that defines it
_EXPORTS = {
    "Mesh": "mesh", "MeshArgs": "mesh",
    "KindCluster": "kind_cluster", "KindClusterArgs": "kind_cluster",
    "HostImages": "kind_cluster", "HostImagesArgs": "kind_cluster",
    "ExistingCluster": "existing_cluster", "ExistingClusterArgs": "existing_cluster",
    "CiliumRelease": "cilium_release", "CiliumReleaseArgs": "cilium_release",
    "MetalLBPool": "metallb_pool", "MetalLBPoolArgs": "metallb_pool",
    "MeshCA": "mesh_ca", "MeshCAArgs": "mesh_ca",
    "MeshConnection": "mesh_connection", "MeshConnectionArgs": "mesh_connection", "MeshMember": "mesh_connection",
    "MeshDemo": "mesh_demo", "MeshDemoArgs": "mesh_demo",
    "ClusterTarget": "cluster_target",
}
__all__ = [
    "CiliumRelease",
    "CiliumReleaseArgs",
    "ClusterTarget",
    "ExistingCluster",
    "ExistingClusterArgs",
    "HostImages",
    "HostImagesArgs",
    "KindCluster",
    "KindClusterArgs",
    "Mesh",
    "MeshArgs",
    "MeshCA",
    "MeshCAArgs",
    "MeshConnection",
    "MeshConnectionArgs",
    "MeshDemo",
    "MeshDemoArgs",
    "MeshMember",
    "MetalLBPool",
    "MetalLBPoolArgs",
]  # = sorted(_EXPORTS); tests/test_interface.py checks it

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from kindmesh.components.cilium_release import CiliumRelease, CiliumReleaseArgs
    from kindmesh.components.cluster_target import ClusterTarget
    from kindmesh.components.existing_cluster import ExistingCluster, ExistingClusterArgs
    from kindmesh.components.kind_cluster import HostImages, HostImagesArgs, KindCluster, KindClusterArgs
    from kindmesh.components.mesh import Mesh, MeshArgs
    from kindmesh.components.mesh_ca import MeshCA, MeshCAArgs
    from kindmesh.components.mesh_connection import MeshConnection, MeshConnectionArgs, MeshMember
    from kindmesh.components.mesh_demo import MeshDemo, MeshDemoArgs
    from kindmesh.components.metallb_pool import MetalLBPool, MetalLBPoolArgs


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kindmesh.components' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # next time: a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
