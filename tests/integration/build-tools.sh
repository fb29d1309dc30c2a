#!/usr/bin/env bash
# Build the real tools that `make integration` runs, pinned, into a cache outside the checkout: the
# Kubernetes binaries, etcd, kwok, helm and the Pulumi CLI from the Go module proxy; the provider
# plugins and Pulumi's Python language host from ../shared/upstream/src (KINDMESH_UPSTREAM_SRC),
# checksums verified. No prebuilt binaries, no downloads but Go modules:
#
#   ${KINDMESH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kindmesh/tools}/<key>/
#     bin/                 pulumi, pulumi-language-python (+ the scripts beside it),
#                          kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd,
#                          kwok, helm
#     pulumi-home/plugins/ resource-<name>-v<version>/ as `pulumi plugin install` lays them out
#     versions.json        every tool: module@version, build seconds, peak RSS
#     READY                written last
#
# <key> is derived from every pinned version (+ the Go version, RECIPE and the digest of the source
# archives' SHA256SUMS), so a second run finds
# READY and builds nothing. Nothing here downloads at run time: the tools are complete once built.
#
# Usage: build-tools.sh [--print-dir] [GROUP...]   GROUP: k8s pulumi providers (default: all)
#   --print-dir  print the ready directory (exit 1 with a message if it is not built)
# Env: KINDMESH_TOOLS_CACHE (cache root), KINDMESH_TOOLS_STATUS (optional markdown status file,
#      rewritten after every tool), KINDMESH_TOOLS_LOG (build log dir; default <cache>/logs/<key>).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

# ------------------------------------------------------------------ the pinned table
# Bump RECIPE when the way a tool is built changes (it is part of the cache key).
RECIPE=2
K8S_VERSION=v1.34.4          # k8s.io/kubernetes; staging modules k8s.io/* at v0.34.4 (kind v0.30 = v1.34.0)
ETCD_VERSION=v3.6.16         # go.etcd.io/etcd/server/v3 (package main at the module root)
HELM_VERSION=v3.22.0         # helm.sh/helm/v3 (the cluster tier installs the real charts with it)
KWOK_VERSION=v0.7.0          # sigs.k8s.io/kwok (its client libraries are v0.33: not newer than the API server)
PULUMI_VERSION=v3.274.0      # github.com/pulumi/pulumi/pkg/v3 CLI (the proxy does not serve v3.272.0/v3.273.0;
                             # a CLI newer than the SDK pulumi==3.272.0 serves it)
LANGHOST_VERSION=3.259.0     # Pulumi's Python language host: the source in ../shared/upstream/src
LANGHOST_SDK=v3.260.0        # the pkg/v3 + sdk/v3 release it builds against (its README), from the proxy
# Provider plugin versions are not repeated here: they are read from requirements.txt (the SDK pins)
# and must equal the source archives' versions in ../shared/upstream/src (checked below).
PROVIDERS=(command kubernetes tls docker)
UPSTREAM_SRC=${KINDMESH_UPSTREAM_SRC:-$ROOT/../shared/upstream/src}

die() { echo "build-tools: $*" >&2; exit 1; }

GO=${GO:-go}
command -v "$GO" >/dev/null || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; } || die "go not found (need Go >= 1.26)"
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0
GOVERSION=$("$GO" env GOVERSION)

declare -A PROVIDER_VERSION
for p in "${PROVIDERS[@]}"; do
  v=$(sed -n "s/^pulumi-$p==\([0-9][0-9.]*\)\s*$/\1/p" "$ROOT/requirements.txt")
  [ -n "$v" ] || die "requirements.txt pins no pulumi-$p==X.Y.Z"
  PROVIDER_VERSION[$p]=$v
done

# The source archives: present, their checksums right, one per provider at the pinned version.
[ -f "$UPSTREAM_SRC/SHA256SUMS" ] || die "no $UPSTREAM_SRC/SHA256SUMS: the provider and language-host sources (../shared/upstream/src) are needed; set KINDMESH_UPSTREAM_SRC to their folder"
UPSTREAM_SRC=$(cd "$UPSTREAM_SRC" && pwd)
for p in "${PROVIDERS[@]}"; do
  [ -f "$UPSTREAM_SRC/pulumi-$p-${PROVIDER_VERSION[$p]}.tar.gz" ] || die "requirements.txt pins pulumi-$p==${PROVIDER_VERSION[$p]}, but $UPSTREAM_SRC has $(cd "$UPSTREAM_SRC" && ls pulumi-$p-*.tar.gz 2>/dev/null | tr '\n' ' ' || true)(the SDK pins must equal the plugins built)"
done
if [ "${1:-}" != "--print-dir" ]; then
  (cd "$UPSTREAM_SRC" && sha256sum --quiet -c SHA256SUMS) >&2 || die "checksums of $UPSTREAM_SRC do not match its SHA256SUMS"
  for a in "$UPSTREAM_SRC"/*.tar.gz; do
    grep -q " $(basename "$a")\$" "$UPSTREAM_SRC/SHA256SUMS" || die "$a is not listed in SHA256SUMS"
  done
fi

key_material() {
  echo "recipe=$RECIPE go=$GOVERSION k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION pulumi=$PULUMI_VERSION helm=$HELM_VERSION"
  echo "langhost=$LANGHOST_VERSION+$LANGHOST_SDK"
  echo "upstream-src=$(sha256sum <"$UPSTREAM_SRC/SHA256SUMS" | cut -c1-16)"
  for p in "${PROVIDERS[@]}"; do echo "provider-$p=${PROVIDER_VERSION[$p]}"; done
}
KEY=$(key_material | sha256sum | cut -c1-16)
CACHE_ROOT=${KINDMESH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kindmesh/tools}
DIR=$CACHE_ROOT/$KEY

if [ "${1:-}" = "--print-dir" ]; then
  [ -f "$DIR/READY" ] || die "tools not built for this pin set ($DIR): run 'make tools'"
  echo "$DIR"; exit 0
fi
# Stamp check first: a built set is never rebuilt (KINDMESH_TOOLS_RETRY=1 retries what the proxy refused).
if [ -f "$DIR/READY" ] && [ -n "${KINDMESH_TOOLS_RETRY:-}" ] && [ -s "$DIR/MISSING" ]; then
  rm -f "$DIR/READY" "$DIR/MISSING" "$DIR"/.stamps/*.failed
fi
if [ -f "$DIR/READY" ]; then
  [ -s "$DIR/MISSING" ] && echo "build-tools: not built (proxy refused): $(cut -d: -f1 "$DIR/MISSING" | tr '\n' ' ')" >&2
  echo "$DIR"; exit 0
fi

GROUPS_WANTED=("$@"); [ ${#GROUPS_WANTED[@]} -gt 0 ] || GROUPS_WANTED=(k8s pulumi providers)
WORK=$CACHE_ROOT/.work/$KEY
LOGS=${KINDMESH_TOOLS_LOG:-$CACHE_ROOT/logs/$KEY}
STAMPS=$DIR/.stamps
mkdir -p "$DIR/bin" "$DIR/pulumi-home/plugins" "$WORK" "$LOGS" "$STAMPS"
key_material >"$DIR/key.txt"
case "$ROOT/" in "$DIR"/*|"$CACHE_ROOT"/*) die "the cache must live outside the checkout";; esac

TIME=/usr/bin/time
[ -x $TIME ] || die "/usr/bin/time not found (Debian: apt-get install time); it measures peak memory"

# ------------------------------------------------------------------ bookkeeping
# A stamp per tool: "module@version seconds peak_kb"; a failure file per failed tool.
status() {
  [ -n "${KINDMESH_TOOLS_STATUS:-}" ] || return 0
  {
    echo "# kindmesh tools (written by tests/integration/build-tools.sh; $(date -u +%FT%TZ))"
    echo
    echo "dir: \`$DIR\`"
    echo
    for f in "$STAMPS"/*; do
      [ -e "$f" ] || continue
      n=$(basename "$f")
      case "$n" in
        *.failed) echo "- ${n%.failed}: NOT BUILT: $(head -c 600 "$f" | tr '\n' ' ')";;
        *) local t secs kb path mv; t=$(cat "$f"); path=${t##* }; t=${t% *}; kb=${t##* }; t=${t% *}; secs=${t##* }; mv=${t% *}
           echo "- $n: ok, $mv, built in ${secs}s, peak RSS $((kb / 1024)) MiB, \`$path\`";;
      esac
    done
    if [ -f "$DIR/READY" ]; then echo; echo "READY (every tool the proxy serves is built)."; fi
  } >"$KINDMESH_TOOLS_STATUS.tmp"
  mv "$KINDMESH_TOOLS_STATUS.tmp" "$KINDMESH_TOOLS_STATUS"
}
done_tool() { [ -f "$STAMPS/$1" ]; }
# timed NAME LOGTAG CMD...: run CMD under /usr/bin/time -v, add its seconds and peak RSS to NAME's tally
declare -A SECS PEAK
timed() {
  local name=$1 tag=$2; shift 2
  local t=$WORK/$name.$tag.time s e
  s=$(date +%s.%N)
  if ! $TIME -v -o "$t" "$@" >>"$LOGS/$name.log" 2>&1; then
    echo "build-tools: $name: '$*' failed; last lines of $LOGS/$name.log:" >&2
    tail -n 25 "$LOGS/$name.log" >&2
    { echo "step '$tag' failed: $*"; grep -vE '^\s*$' "$LOGS/$name.log" | tail -n 4; } >"$STAMPS/$name.failed"
    status; return 1
  fi
  e=$(date +%s.%N)
  local kb; kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$t")
  SECS[$name]=$(echo "${SECS[$name]:-0} + $e - $s" | bc)
  [ "${kb:-0}" -gt "${PEAK[$name]:-0}" ] && PEAK[$name]=$kb
  return 0
}
stamp() { # NAME MODULE@VERSION PATH
  rm -f "$STAMPS/$1.failed"
  printf '%s %.0f %s %s\n' "$2" "${SECS[$1]:-0}" "${PEAK[$1]:-0}" "$3" >"$STAMPS/$1"
  echo "build-tools: $1 ok ($2, $(printf %.0f "${SECS[$1]:-0}")s) -> $3"
  status
}
# wrapper NAME GODIRECTIVE: a fresh wrapper module dir for NAME (echoes its path)
wrapper() {
  local w=$WORK/$1; rm -rf "$w"; mkdir -p "$w"
  printf 'module kindmesh.local/tools/%s\n\ngo %s\n' "$1" "${GOVERSION#go}" >"$w/go.mod"
  echo "$w"
}
# moddir MODULE@VERSION: the module's extracted source in the module cache (downloads via the proxy)
moddir() { "$GO" mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'; }
modfile() { "$GO" mod download -json "$1" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p'; }

# ------------------------------------------------------------------ Kubernetes
build_k8s() {
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl) b need=0
  for b in "${bins[@]}"; do done_tool "$b" || need=1; done
  if [ $need = 1 ]; then
    local w mf minor staging m ld
    w=$(wrapper kubernetes)
    mf=$(modfile "k8s.io/kubernetes@$K8S_VERSION")
    # k8s.io/kubernetes replaces every staging module with ./staging/src/k8s.io/<name>; outside
    # the repo each is the published module at v0.<minor>.<patch>.
    staging="v0.${K8S_VERSION#v1.}"
    {
      echo; echo "require k8s.io/kubernetes $K8S_VERSION"; echo; echo "replace ("
      sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*\s*$#\t\1 => \1 '"$staging"'#p' "$mf"
      echo ")"
    } >>"$w/go.mod"
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    ld="-s -w"
    for m in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $m.gitVersion=$K8S_VERSION -X $m.gitMajor=1 -X $m.gitMinor=$minor -X $m.gitTreeState=clean -X $m.buildDate=1970-01-01T00:00:00Z"
    done
    for b in "${bins[@]}"; do
      done_tool "$b" && continue
      { timed "$b" get "$GO" -C "$w" get "k8s.io/kubernetes/cmd/$b@$K8S_VERSION" \
        && timed "$b" build "$GO" -C "$w" build -p 2 -trimpath -ldflags "$ld" -o "$DIR/bin/$b" "k8s.io/kubernetes/cmd/$b" \
        && if [ "$b" = kubectl ]; then timed "$b" version "$DIR/bin/$b" version --client; else timed "$b" version "$DIR/bin/$b" --version; fi; } || return 1
      grep -q "$K8S_VERSION" "$LOGS/$b.log" || { echo "version mismatch" >"$STAMPS/$b.failed"; return 1; }
      stamp "$b" "k8s.io/kubernetes/cmd/$b@$K8S_VERSION" "$DIR/bin/$b"
    done
  fi
  if ! done_tool etcd; then
    local w
    w=$(wrapper etcd)
    # server/v3's go.mod replaces its sibling modules with ../api, ../client/...: outside the repo
    # they are the published modules, which its require lines already name at the same version.
    { timed etcd get "$GO" -C "$w" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
      && timed etcd build "$GO" -C "$w" build -p 2 -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
           -o "$DIR/bin/etcd" go.etcd.io/etcd/server/v3 \
      && timed etcd version "$DIR/bin/etcd" --version; } || return 1
    stamp etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$DIR/bin/etcd"
  fi
  if ! done_tool kwok; then
    local w
    w=$(wrapper kwok)
    { timed kwok get "$GO" -C "$w" get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
      && timed kwok build "$GO" -C "$w" build -p 2 -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
           -o "$DIR/bin/kwok" sigs.k8s.io/kwok/cmd/kwok \
      && timed kwok version "$DIR/bin/kwok" --version; } || return 1
    stamp kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$DIR/bin/kwok"
  fi
  if ! done_tool helm; then
    local w
    w=$(wrapper helm)
    { timed helm get "$GO" -C "$w" get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
      && timed helm build "$GO" -C "$w" build -p 2 -trimpath \
           -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" -o "$DIR/bin/helm" helm.sh/helm/v3/cmd/helm \
      && timed helm version "$DIR/bin/helm" version --short; } || return 1
    grep -q "$HELM_VERSION" "$LOGS/helm.log" || { echo "helm version does not print $HELM_VERSION" >"$STAMPS/helm.failed"; return 1; }
    stamp helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$DIR/bin/helm"
  fi
}

# replaces_of GOMOD SAMEVERSION: the replace directives of a dependency's go.mod, for a wrapper
# module. Replacements by another module version are kept as they are; replacements by a local
# directory (a sibling module of the same repository) become that module at SAMEVERSION.
replaces_of() {
  "$GO" mod edit -json "$1" | python3 -c '
import json, sys
same = sys.argv[1]
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    lhs = old["Path"] + (" " + old["Version"] if old.get("Version") else "")
    if new.get("Version"):
        print("replace %s => %s %s" % (lhs, new["Path"], new["Version"]))
    elif same:
        print("replace %s => %s %s" % (lhs, old["Path"], same))
' "${2:-}"
}

# ------------------------------------------------------------------ Pulumi CLI + Python language host
PULUMI_PKG=github.com/pulumi/pulumi/pkg/v3
PULUMI_SDK=github.com/pulumi/pulumi/sdk/v3
build_pulumi() {
  local w ld="-s -w -X $PULUMI_SDK/go/common/version.Version=$PULUMI_VERSION"
  if ! done_tool pulumi; then
    w=$(wrapper pulumi)
    # pkg/v3 replaces sdk/v3 with ../sdk (-> the same release) and pins a clipboard fork.
    { printf '\nrequire (\n\t%s %s\n\t%s %s\n)\n' "$PULUMI_PKG" "$PULUMI_VERSION" "$PULUMI_SDK" "$PULUMI_VERSION"
      replaces_of "$(modfile "$PULUMI_PKG@$PULUMI_VERSION")" "$PULUMI_VERSION"; } >>"$w/go.mod"
    { timed pulumi get "$GO" -C "$w" get "$PULUMI_PKG/cmd/pulumi@$PULUMI_VERSION" \
      && timed pulumi build "$GO" -C "$w" build -p 2 -trimpath -ldflags "$ld" -o "$DIR/bin/pulumi" "$PULUMI_PKG/cmd/pulumi" \
      && timed pulumi version env PULUMI_SKIP_UPDATE_CHECK=true PULUMI_HOME="$DIR/pulumi-home" "$DIR/bin/pulumi" version; } || return 1
    grep -q "^$PULUMI_VERSION\$" "$LOGS/pulumi.log" || { echo "pulumi version does not print $PULUMI_VERSION" >"$STAMPS/pulumi.failed"; return 1; }
    stamp pulumi "$PULUMI_PKG/cmd/pulumi@$PULUMI_VERSION" "$DIR/bin/pulumi"
  fi
}
# ------------------------------------------------------------------ provider plugins + language host
# The Go module proxy does not serve the provider modules at their releases, nor Pulumi's Python
# language host: their sources are archives in ../shared/upstream/src (KINDMESH_UPSTREAM_SRC),
# verified against its SHA256SUMS (whose digest is part of the cache key), built by the recipe of
# its README. Every other module comes from the proxy.
# extract_src: a fresh writable tree of every archive under $WORK/src.<pid> (the docker patches are
# applied once per tree, so each run makes its own, and removes it when it ends).
SRC_TREE=""
extract_src() {
  [ -n "$SRC_TREE" ] && return 0
  SRC_TREE=$WORK/src.$$
  rm -rf "$SRC_TREE"; mkdir -p "$SRC_TREE"
  trap 'rm -rf "$SRC_TREE"' EXIT
  local a
  for a in "$UPSTREAM_SRC"/*.tar.gz; do tar -xzf "$a" -C "$SRC_TREE" || return 1; done
  chmod -R u+w "$SRC_TREE"
}
srcdir() { # NAME-PREFIX: the one extracted folder whose name starts with it
  local d; d=$(ls -d "$SRC_TREE/$1"* 2>/dev/null | head -1)
  [ -n "$d" ] || { echo "build-tools: no $1* archive in $UPSTREAM_SRC" >&2; return 1; }
  echo "$d"
}

declare -A PROVIDER_MAJOR=([command]="" [kubernetes]=/v4 [tls]=/v5 [docker]=/v5)
build_provider() {
  local name=$1 v=${PROVIDER_VERSION[$1]} tool="provider-$1"
  local mod="github.com/pulumi/pulumi-$name/provider${PROVIDER_MAJOR[$name]}"
  local pdir="$DIR/pulumi-home/plugins/resource-$name-v$v"
  local bin="$pdir/pulumi-resource-$name" ld="-s -w -X $mod/pkg/version.Version=$v" p s
  done_tool "$tool" && return 0
  : >"$LOGS/$tool.log"
  extract_src || return 1
  p=$(srcdir "pulumi-$name-$v") || { echo "no source archive pulumi-$name-$v" >"$STAMPS/$tool.failed"; return 1; }
  mkdir -p "$pdir"
  case "$name" in
    command)
      timed "$tool" build "$GO" -C "$p/provider" build -mod=mod -p 2 -trimpath -ldflags "$ld" \
        -o "$bin" ./cmd/pulumi-resource-command || return 1;;
    tls)
      timed "$tool" replace "$GO" -C "$p/provider" mod edit \
          -replace "github.com/pulumi/pulumi-yaml=$(srcdir pulumi-yaml-)" \
          -replace "github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3=$(srcdir pulumi-dotnet-)/pulumi-language-dotnet" \
          -replace "github.com/hashicorp/terraform-provider-tls=$(srcdir terraform-provider-tls-)" \
        && timed "$tool" generate env -C "$p/provider" GOFLAGS="-mod=mod -buildvcs=false" VERSION="$v" "$GO" generate cmd/pulumi-resource-tls/main.go \
        && timed "$tool" build "$GO" -C "$p/provider" build -mod=mod -p 2 -trimpath -ldflags "$ld" -o "$bin" ./cmd/pulumi-resource-tls \
        || return 1;;
    docker)
      # provider/go.mod replaces the upstream module with ../upstream: the release's submodule
      # commit, patched by the repository's patches/.
      s=$(srcdir terraform-provider-docker-) || return 1
      rm -rf "$p/upstream"; mv "$s" "$p/upstream"
      for s in "$p"/patches/*.patch; do
        timed "$tool" "patch-$(basename "$s")" git -C "$p/upstream" apply "$s" || return 1
      done
      timed "$tool" generate env -C "$p/provider" GOFLAGS="-mod=mod -buildvcs=false" VERSION="$v" "$GO" generate cmd/pulumi-resource-docker/main.go \
        && timed "$tool" build "$GO" -C "$p/provider" build -mod=mod -tags no_compose -p 2 -trimpath -ldflags "$ld" \
             -o "$bin" ./cmd/pulumi-resource-docker || return 1;;
    kubernetes)
      timed "$tool" replace "$GO" -C "$p/provider" mod edit \
          -replace "github.com/pulumi/pulumi/pkg/v3=$(srcdir pulumi-pkg-)/pkg" \
          -replace "github.com/fluxcd/pkg/ssa=$(srcdir fluxcd-pkg-ssa-)/ssa" \
        && timed "$tool" generate env -C "$p/provider" GOFLAGS="-mod=mod -buildvcs=false" VERSION="$v" "$GO" generate cmd/pulumi-resource-kubernetes/main.go \
        && timed "$tool" build "$GO" -C "$p/provider" build -mod=mod -p 2 -trimpath -ldflags "$ld" -o "$bin" ./cmd/pulumi-resource-kubernetes \
        || return 1;;
    *) die "no recipe for provider $name";;
  esac
  if [ "$name" = tls ]; then  # only tls answers -version (the others have no such flag)
    timed "$tool" version "$bin" -version || return 1
    grep -qx "$v" <(tail -n 3 "$LOGS/$tool.log") || { echo "$bin -version does not print $v" >"$STAMPS/$tool.failed"; return 1; }
  fi
  stamp "$tool" "$mod@v$v ($(basename "$p"), ../shared/upstream/src)" "$bin"
}

build_providers() {
  local p rc=0
  for p in "${PROVIDERS[@]}"; do build_provider "$p" || rc=1; done
  return $rc
}

# Pulumi's Python language host (the release's source) against the pkg/sdk release the README names,
# with the launcher scripts that Pulumi's releases ship beside it (from that sdk/v3 module).
build_langhost() {
  local tool=pulumi-language-python h sdk
  if ! done_tool "$tool"; then
    : >"$LOGS/$tool.log"
    extract_src || return 1
    h=$(srcdir "pulumi-language-python-$LANGHOST_VERSION")/sdk/python/cmd/pulumi-language-python || return 1
    timed "$tool" edit "$GO" -C "$h" mod edit \
        -dropreplace "$PULUMI_PKG" -dropreplace "$PULUMI_SDK" \
        -require "$PULUMI_PKG@$LANGHOST_SDK" -require "$PULUMI_SDK@$LANGHOST_SDK" \
      && timed "$tool" build "$GO" -C "$h" build -mod=mod -p 2 -trimpath \
           -ldflags "-s -w -X $PULUMI_SDK/go/common/version.Version=v$LANGHOST_VERSION" -o "$DIR/bin/$tool" . \
      || return 1
    stamp "$tool" "pulumi/pulumi sdk/python/cmd/pulumi-language-python@v$LANGHOST_VERSION (../shared/upstream/src) + $PULUMI_SDK@$LANGHOST_SDK" "$DIR/bin/$tool"
  fi
  if ! done_tool python-scripts; then
    sdk=$(moddir "$PULUMI_SDK@$LANGHOST_SDK")
    [ -n "$sdk" ] || { echo "$PULUMI_SDK@$LANGHOST_SDK not served" >"$STAMPS/python-scripts.failed"; return 1; }
    install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$DIR/bin/pulumi-language-python-exec"
    install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$DIR/bin/pulumi-resource-pulumi-python"
    stamp python-scripts "$PULUMI_SDK@$LANGHOST_SDK (python/cmd, python/dist)" "$DIR/bin/pulumi-language-python-exec"
  fi
}

# ------------------------------------------------------------------ main
echo "build-tools: building into $DIR (logs: $LOGS)"
rc=0
for g in "${GROUPS_WANTED[@]}"; do
  case "$g" in
    k8s) build_k8s || rc=1;;
    pulumi) build_pulumi || rc=1; build_langhost || rc=1;;
    providers) build_providers || rc=1;;
    *) die "unknown group '$g' (k8s, pulumi, providers)";;
  esac
done
# A failed build fails the run (nothing is marked READY). A provider the proxy refuses to serve at
# the pinned version is recorded in MISSING and versions.json; the rest is still marked READY.
hard=$(grep -L '^unavailable:' "$STAMPS"/*.failed 2>/dev/null || true)
if [ -n "$hard" ]; then
  status; die "failed: $(basename -a $hard | sed 's/\.failed$//' | tr '\n' ' ')(see $LOGS); built tools are kept and not rebuilt"
fi
if [ ${#GROUPS_WANTED[@]} != 3 ]; then
  status; echo "build-tools: done with ${GROUPS_WANTED[*]} (READY needs all groups)"
  [ $rc = 0 ] || echo "build-tools: not built (proxy refused): $(basename -a "$STAMPS"/*.failed | sed 's/\.failed$//' | tr '\n' ' ')" >&2
  exit 0
fi
python3 - "$DIR" "$STAMPS" <<'PY'
import json, os, sys, glob
d, stamps = sys.argv[1], sys.argv[2]
tools, missing = {}, {}
for f in sorted(glob.glob(os.path.join(stamps, "*"))):
    name = os.path.basename(f)
    text = open(f).read().strip()
    if name.endswith(".failed"):
        missing[name[:-len(".failed")]] = text
        continue
    module, secs, kb, path = text.rsplit(" ", 3)
    tools[name] = {"module": module, "build_seconds": int(secs),
                   "peak_rss_kib": int(kb), "path": os.path.relpath(path, d)}
key = dict(l.split("=", 1) for l in open(os.path.join(d, "key.txt")).read().split())
json.dump({"key": key, "tools": tools, "unavailable": missing}, open(os.path.join(d, "versions.json"), "w"), indent=2)
with open(os.path.join(d, "MISSING"), "w") as m:
    for k, v in missing.items():
        m.write("%s: %s\n" % (k, " ".join(v.split())))
PY
date -u +%FT%TZ >"$DIR/READY"
status
if [ -s "$DIR/MISSING" ]; then
  echo "build-tools: WARNING: not built (the Go module proxy does not serve them):" >&2
  sed 's/^/  /' "$DIR/MISSING" >&2
fi
echo "$DIR"
