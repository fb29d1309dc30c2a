"""Pure core: stack config -> plan, renderers. No pulumi import (tested without Pulumi)."""
