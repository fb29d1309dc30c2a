"""Pure core: stack config -> plan, renderers. No pulumi import (tested without Pulumi).

Layers, lowest first: types (model, charts), catalogue (images, versions), parsing (collector,
config_values, config_existing, config_raw, config), planning (naming, existing, planner),
rendering (render_existing, render, demo); docs/how-it-works.md, "The core's layers".

May import: nothing (the package imports none of its modules).
"""
