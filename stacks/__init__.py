"""kindmesh stack layer: typed config, pure planner, renderers and the composition."""
