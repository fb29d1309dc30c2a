"""kindmesh.stacks: the stack composition (plan -> components, wired) and the preflights."""
