"""kindmesh: a mesh of kind clusters (Cilium ClusterMesh + MetalLB) as one Pulumi stack."""

from stacks import preflight
from stacks.composition import build, export, plan_from_pulumi

plan = plan_from_pulumi()
export(build(plan, preflight=preflight.run))
