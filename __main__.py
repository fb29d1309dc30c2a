"""kindmesh: a mesh of kind clusters (Cilium ClusterMesh + MetalLB) as one Pulumi stack."""

from kindmesh.stacks import preflight_existing
from kindmesh.stacks.composition import build, export, plan_from_pulumi, tune_gc

tune_gc()
plan = plan_from_pulumi()
# host checks for kind clusters + read-only checks of existing clusters (resolves ipam: auto)
export(build(plan, preflight=preflight_existing.run))
