#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy, once, into a cache outside git.
# Each binary lives under $TICCLIP_CACHE/bin/<name>-<version>/ so a version bump rebuilds only it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/versions.env"

CACHE="${TICCLIP_CACHE:-$HOME/.cache/continual-clip-operator}"
SRC="$CACHE/src"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0
mkdir -p "$SRC" "$CACHE/bin"
# Clones on one machine share this cache: one build at a time, so two never write the same
# <name>.tmp folder (a second one waits, then finds the binaries built). The real node's parts
# (issue 23) write folders of their own and take a lock of their own, so an e2e run never waits for
# the fast tier's cold build, nor the other way round.
lock() {
  exec 9>"$CACHE/$1.lock"
  flock 9
}

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
  kubernetes_commands "kubernetes-$KUBERNETES_VERSION" kube-apiserver kube-controller-manager kubectl
}

# The real node's parts (dev/node.sh): the kubelet, the scheduler and kube-proxy.
build_kubernetes_node() {
  kubernetes_commands "kubernetes-node-$KUBERNETES_VERSION" kubelet kube-scheduler kube-proxy
}

# kubernetes_commands NAME CMD...: builds k8s.io/kubernetes/cmd/CMD of the release into $CACHE/bin/NAME.
kubernetes_commands() {
  local name=$1; shift
  local out="$CACHE/bin/$name" cmd
  for cmd in "$@"; do [[ -x $out/$cmd ]] || break; done
  [[ -x $out/$cmd ]] && return 0
  log "kubernetes $KUBERNETES_VERSION ($*)"
  local dir="$SRC/$name"
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
  for cmd in "$@"; do
    log "  $cmd"
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
  mv "$out.tmp" "$out"
}

# module_binary DIR MODULE VERSION PACKAGE LDFLAGS [extra go.mod lines]: builds PACKAGE of MODULE@VERSION
# into $CACHE/bin/DIR/<basename of PACKAGE>, unless it is there already.
module_binary() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=$5 extra=${6:-}
  local out="$CACHE/bin/$name" bin=${4##*/}
  [[ -x $out/$bin ]] && return 0
  log "$bin ($module $version)"
  local dir="$SRC/$name"
  tools_module "$dir" "$module" "$version" "$extra"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/$bin" "$pkg")
  mv "$out.tmp" "$out"
}

build_minio() {
  module_binary "minio-$MINIO_VERSION" github.com/minio/minio "$MINIO_VERSION" github.com/minio/minio "-s -w"
}

# k8s_pins MODULE...: require lines pinning these k8s.io modules to the cluster's release, so a
# tool built on the same minor shares Go's build cache with kube-apiserver and kubectl.
k8s_pins() {
  local v="v0.${KUBERNETES_VERSION#v1.}"
  printf 'require (\n'
  for m in "$@"; do
    printf '\tk8s.io/%s %s\n' "$m" "$v"
  done
  printf ')\n'
}

build_helm() {
  # As helm's Makefile does: the Kubernetes version `helm template` and `helm lint` assume offline.
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  module_binary "helm-$HELM_VERSION-k8s$minor" helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$ldflags" \
    "$(k8s_pins api apiextensions-apiserver apimachinery apiserver cli-runtime client-go component-base kubectl)"
}

build_promtool() {
  module_binary "promtool-$PROMETHEUS_VERSION" github.com/prometheus/prometheus "$PROMETHEUS_VERSION" \
    github.com/prometheus/prometheus/cmd/promtool "-s -w" "$(k8s_pins api apimachinery client-go)"
}

build_kustomize() {
  # Its package path ends in v5, so it is built by hand under its own name.
  local out="$CACHE/bin/kustomize-$KUSTOMIZE_VERSION"
  [[ -x $out/kustomize ]] && return 0
  log "kustomize $KUSTOMIZE_VERSION"
  local dir="$SRC/kustomize-$KUSTOMIZE_VERSION"
  tools_module "$dir" sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
  (cd "$dir" && go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=$KUSTOMIZE_VERSION" \
    -o "$out.tmp/kustomize" sigs.k8s.io/kustomize/kustomize/v5)
  mv "$out.tmp" "$out"
}

# KServe's InferenceService CRD, copied from its Go module (config/crd/full): not a binary, but
# fetched, pinned and cached the same way.
build_kserve_crd() {
  local out="$CACHE/crds/kserve-$KSERVE_VERSION"
  [[ -f $out/serving.kserve.io_inferenceservices.yaml ]] && return 0
  log "KServe CRDs (github.com/kserve/kserve $KSERVE_VERSION)"
  local dir
  dir=$(cd "$SRC" && go mod download -json "github.com/kserve/kserve@$KSERVE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$out.tmp"
  cp "$dir/config/crd/full/serving.kserve.io_inferenceservices.yaml" "$out.tmp/"
  rm -rf "$out"
  mv "$out.tmp" "$out"
}

# CoreDNS for the real node's cluster DNS (Indexed Job pods find each other through a headless
# Service). Its k8s.io modules are pinned to the cluster's release, as helm's are.
build_coredns() {
  module_binary "coredns-$COREDNS_VERSION-k8s${KUBERNETES_VERSION}" github.com/coredns/coredns "$COREDNS_VERSION" \
    github.com/coredns/coredns "-s -w" "$(k8s_pins api apimachinery client-go)"
}

# The pods' sandbox ("pause") process: a static binary from dev/node/pause.c, keyed by its hash.
build_pause() {
  local out="$CACHE/bin/pause-$(sha256sum "$HERE/node/pause.c" | cut -c1-12)"
  [[ -x $out/pause ]] && return 0
  log "pause (dev/node/pause.c)"
  mkdir -p "$out.tmp"
  gcc -static -Os -Wall -Werror -o "$out.tmp/pause" "$HERE/node/pause.c"
  strip "$out.tmp/pause"
  mv "$out.tmp" "$out"
}

# Our own Go test tools (dev/tools/<name>, each its own module): the version is a hash of the
# sources, so an edit rebuilds and an unchanged tree never does.
tool_version() {
  (cd "$HERE/tools/$1" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)
}

build_gitops_health() {
  local out="$CACHE/bin/gitops-health-$(tool_version gitops-health)"
  [[ -x $out/gitops-health ]] && return 0
  log "gitops-health (dev/tools/gitops-health)"
  (cd "$HERE/tools/gitops-health" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/gitops-health" .)
  mv "$out.tmp" "$out"
}

# path NAME: prints the cached binary's path (building it first if needed), for tests.
binary_path() {
  case $1 in
    etcd) echo "$CACHE/bin/etcd-$ETCD_VERSION/etcd" ;;
    kubernetes) echo "$CACHE/bin/kubernetes-$KUBERNETES_VERSION/kubectl" ;;
    minio) echo "$CACHE/bin/minio-$MINIO_VERSION/minio" ;;
    helm) local minor=${KUBERNETES_VERSION#v1.}; echo "$CACHE/bin/helm-$HELM_VERSION-k8s${minor%%.*}/helm" ;;
    promtool) echo "$CACHE/bin/promtool-$PROMETHEUS_VERSION/promtool" ;;
    gitops_health) echo "$CACHE/bin/gitops-health-$(tool_version gitops-health)/gitops-health" ;;
    kustomize) echo "$CACHE/bin/kustomize-$KUSTOMIZE_VERSION/kustomize" ;;
    kserve_crd) echo "$CACHE/crds/kserve-$KSERVE_VERSION/serving.kserve.io_inferenceservices.yaml" ;;
    kubernetes_node) echo "$CACHE/bin/kubernetes-node-$KUBERNETES_VERSION" ;;
    coredns) echo "$CACHE/bin/coredns-$COREDNS_VERSION-k8s${KUBERNETES_VERSION}/coredns" ;;
    pause) echo "$CACHE/bin/pause-$(sha256sum "$HERE/node/pause.c" | cut -c1-12)/pause" ;;
    *) echo "unknown binary $1" >&2; return 2 ;;
  esac
}

# The real node's parts (`node` stands for all three) build under a lock of their own.
NODE_TARGETS=(kubernetes_node coredns pause)
lock_for() {
  if [[ " ${NODE_TARGETS[*]} " == *" $1 "* ]]; then lock build-node; else lock build; fi
}

if [[ ${1:-} == --path ]]; then
  name=${2:?--path NAME}
  lock_for "$name"
  "build_$name" >&2
  binary_path "$name"
  exit 0
fi

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(etcd kubernetes minio helm promtool gitops_health kustomize kserve_crd)
[[ ${targets[*]} == node ]] && targets=("${NODE_TARGETS[@]}")
for t in "${targets[@]}"; do
  # A built target is final (each lands with one mv): no need to wait for another clone's lock.
  [[ -e $(binary_path "$t") ]] && continue
  lock_for "$t"
  "build_$t"
done
