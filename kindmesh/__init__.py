"""kindmesh: a mesh of kind (and existing) clusters with Cilium ClusterMesh and MetalLB.

Import names (a stable interface from 0.1 on; see README "Stable interface"):

* ``kindmesh.core``        pure: config, planner, renderers (no ``pulumi`` import)
* ``kindmesh.components``  the ComponentResources (``components/`` in the repository)
* ``kindmesh.stacks``      the stack composition and its preflights (``stacks/``)
* ``kindmesh.deploy``      code that runs at deploy time in provider/command processes
* ``kindmesh.cli``         command-line tools: verify, doctor

In a checkout, ``components/`` and ``stacks/`` sit at the top level (the Pulumi project's
layout); this file maps them under ``kindmesh`` so there is one set of import names
whether the code runs from the checkout or from an installed wheel (where setuptools'
``package-dir`` puts them in place).
"""

from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.1.0"

# The directory from which `python -m kindmesh.…` resolves: the checkout, or site-packages.
PACKAGE_HOME = _Path(__file__).resolve().parent.parent

if all((PACKAGE_HOME / p).is_file() for p in ("Pulumi.yaml", "components/__init__.py", "stacks/__init__.py")):
    __path__.append(str(PACKAGE_HOME))  # checkout: kindmesh.components -> ./components, …
