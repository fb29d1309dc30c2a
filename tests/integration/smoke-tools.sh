#!/usr/bin/env bash
# Smoke test of the tools `make tools` built: every binary answers --version, `pulumi plugin ls`
# lists the provider plugins at the versions the pinned SDKs request, and a throwaway Python
# project goes up, up again (no changes) and down with the built CLI + language host, on a local
# file backend, in a network namespace with loopback only (so nothing can be downloaded).
#
# Usage: smoke-tools.sh TOOLS_DIR VENV_PYTHON
set -euo pipefail

DIR=${1:?usage: smoke-tools.sh TOOLS_DIR VENV_PYTHON}
PY=${2:?usage: smoke-tools.sh TOOLS_DIR VENV_PYTHON}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=$(cd "$(dirname "$PY")/.." && pwd)
fail() { echo "smoke-tools: FAIL: $*" >&2; exit 1; }

for b in kube-apiserver kube-controller-manager kube-scheduler etcd kwok pulumi; do
  [ -x "$DIR/bin/$b" ] || fail "$DIR/bin/$b is missing"
done
echo "smoke-tools: $("$DIR/bin/kube-apiserver" --version) / etcd $("$DIR/bin/etcd" --version | sed -n 's/^etcd Version: //p') / kwok $("$DIR/bin/kwok" --version 2>&1 | head -1)"

WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
# A PULUMI_HOME of the test's own: the plugins come from the cache, everything else stays here.
mkdir -p "$WORK/home"; ln -s "$DIR/pulumi-home/plugins" "$WORK/home/plugins"
export PULUMI_HOME=$WORK/home PATH="$DIR/bin:$PATH" PULUMI_SKIP_UPDATE_CHECK=true \
  PULUMI_CONFIG_PASSPHRASE=x PULUMI_BACKEND_URL="file://$WORK/state" \
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
mkdir -p "$WORK/state"
echo "smoke-tools: pulumi $(pulumi version)"

# Plugins at the versions the pinned SDKs request (each wheel's pulumi-plugin.json).
pulumi plugin ls >"$WORK/plugins.txt"
cat "$WORK/plugins.txt"
missing=()
while read -r name version; do
  grep -qE "^$name[[:space:]]+resource[[:space:]]+$version[[:space:]]" "$WORK/plugins.txt" || missing+=("$name $version")
done < <("$PY" - <<'EOF'
import json, importlib.metadata as md
for dist in ("pulumi-command", "pulumi-kubernetes", "pulumi-tls", "pulumi-docker"):
    for f in md.distribution(dist).files or []:
        if f.name == "pulumi-plugin.json":
            d = json.loads(f.read_text())
            print(d["name"], d["version"])
EOF
)
[ ${#missing[@]} = 0 ] || echo "smoke-tools: plugins not installed: ${missing[*]} (see $DIR/MISSING)" >&2

# The project: a Python dynamic provider (served by bin/pulumi-resource-pulumi-python) and, when the
# command plugin is there, a local.Command.
P=$WORK/project; mkdir -p "$P"
cat >"$P/Pulumi.yaml" <<EOF
name: tools-smoke
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: $VENV
EOF
with_command=0
[ -x "$DIR/pulumi-home/plugins/resource-command-v$(grep -Po '^pulumi-command==\K.*' "$ROOT/requirements.txt")/pulumi-resource-command" ] && with_command=1
cat >"$P/__main__.py" <<EOF
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class Upper(ResourceProvider):
    def create(self, props):
        return CreateResult(id_="upper", outs={"text": props["text"], "upper": props["text"].upper()})


class Shout(Resource):
    upper: pulumi.Output[str]

    def __init__(self, name, text):
        super().__init__(Upper(), name, {"text": text, "upper": None})


pulumi.export("dynamic", Shout("shout", "hello").upper)
pulumi.export("stack", pulumi.get_stack())
if $with_command:
    from pulumi_command import local

    pulumi.export("command", local.Command("echo", create="echo hello-from-command").stdout)
EOF

# Loopback only, when this user may make a network namespace (root here; CI is root too).
run() { "$@"; }
if unshare -n true 2>/dev/null; then
  run() { unshare -n sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "$@"; }
  echo "smoke-tools: running pulumi in a network namespace with loopback only"
fi
cd "$P"
run pulumi stack init smoke >/dev/null
start=$(date +%s)
run pulumi up --yes --non-interactive >"$WORK/up1.txt" 2>&1 || { cat "$WORK/up1.txt"; fail "pulumi up"; }
[ "$(pulumi stack output dynamic)" = HELLO ] || fail "dynamic output: $(pulumi stack output dynamic)"
[ "$(pulumi stack output stack)" = smoke ] || fail "stack output"
if [ $with_command = 1 ]; then
  [ "$(pulumi stack output command)" = hello-from-command ] || fail "command output: $(pulumi stack output command)"
fi
run pulumi up --yes --non-interactive --expect-no-changes >"$WORK/up2.txt" 2>&1 || { cat "$WORK/up2.txt"; fail "second up changed something"; }
run pulumi destroy --yes --non-interactive >"$WORK/down.txt" 2>&1 || { cat "$WORK/down.txt"; fail "pulumi destroy"; }
pulumi stack rm --yes smoke >/dev/null
echo "smoke-tools: up, up (no changes), destroy: ok in $(( $(date +%s) - start ))s (command plugin: $([ $with_command = 1 ] && echo used || echo 'not built, skipped'))"
sed -n '/Resources:/,$p' "$WORK/up1.txt"
[ ${#missing[@]} = 0 ] || fail "provider plugins missing: ${missing[*]}"
echo "smoke-tools: ok"
