"""Command-line tools: `python -m kindmesh.cli.verify`, `python -m kindmesh.cli.doctor`."""
