#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy, once, into a cache outside git.
# Each binary lives under $TICCLIP_CACHE/bin/<name>-<version>/ so a version bump rebuilds only it.
set -euo pipefail
source "$(dirname "$0")/versions.env"

CACHE="${TICCLIP_CACHE:-$HOME/.cache/continual-clip-operator}"
SRC="$CACHE/src"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0
mkdir -p "$SRC" "$CACHE/bin"

log() { echo "[build] $*" >&2; }

# tools_module DIR MODULE VERSION [extra go.mod lines]: a throwaway module that requires MODULE,
# because `go install pkg@version` refuses modules whose go.mod has replace directives.
tools_module() {
  local dir=$1 module=$2 version=$3 extra=${4:-}
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module ticclip.dev/localcluster-tools

go 1.24.0

require $module $version
$extra
MOD
}

build_etcd() {
  local out="$CACHE/bin/etcd-$ETCD_VERSION"
  [[ -x $out/etcd ]] && return 0
  log "etcd $ETCD_VERSION"
  local dir="$SRC/etcd-$ETCD_VERSION"
  tools_module "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  (cd "$dir" && go build -trimpath -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  mv "$out.tmp" "$out"
}

build_kubernetes() {
  local out="$CACHE/bin/kubernetes-$KUBERNETES_VERSION"
  [[ -x $out/kube-apiserver && -x $out/kube-controller-manager && -x $out/kubectl ]] && return 0
  log "kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kubectl)"
  local dir="$SRC/kubernetes-$KUBERNETES_VERSION"
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  # k8s.io/kubernetes points its staging modules at ./staging/...; replace each with the
  # published v0.x of the same release, listed from the module's own go.mod.
  local gomod
  gomod=$(cd "$SRC" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local replaces
  replaces=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod")
  tools_module "$dir" k8s.io/kubernetes "$KUBERNETES_VERSION" "replace (
$replaces
)"
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$out.tmp"
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    log "  $cmd"
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
  mv "$out.tmp" "$out"
}

build_minio() {
  local out="$CACHE/bin/minio-$MINIO_VERSION"
  [[ -x $out/minio ]] && return 0
  log "minio $MINIO_VERSION"
  local dir="$SRC/minio-$MINIO_VERSION"
  tools_module "$dir" github.com/minio/minio "$MINIO_VERSION"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/minio" github.com/minio/minio)
  mv "$out.tmp" "$out"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(etcd kubernetes minio)
for t in "${targets[@]}"; do "build_$t"; done
