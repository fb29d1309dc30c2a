"""kindmesh.components: thin, reusable ComponentResources (typed args, no planner types)."""
