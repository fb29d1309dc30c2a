"""kindmesh components: thin ComponentResources that turn a plan into resources."""
