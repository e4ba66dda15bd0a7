#!/usr/bin/env bash
# Our images, built from our own Dockerfiles with buildah (no Docker, no registry), for the real
# node (issue 23, adr/0004):
#   dev/node/images.sh ref trainer|operator        the image's reference (a hash of its inputs)
#   dev/node/images.sh load trainer|operator ADDR  builds it unless cached, imports it into the
#                                                  containerd at ADDR (namespace k8s.io) unless
#                                                  there; prints the reference
#   dev/node/images.sh pause BINARY REF            an image of the static pause binary; prints
#                                                  the path of its archive (dev/node/node.sh)
# The Dockerfiles take their base as a build argument; here the bases are made from Debian packages
# with debootstrap (bookworm minbase), the production defaults stay. Nothing else differs.
#   trainer:  BASE_IMAGE=bookworm minbase (the Dockerfile installs python3.11 with apt)
#   operator: NODE_IMAGE=bookworm minbase + the Node 24 binary of node_modules + the machine's npm
# Both bases trust what this machine trusts: its local CA certificates
# (/usr/local/share/ca-certificates, where a TLS-intercepting egress proxy's CA lives) and pip and
# npm configured to use the system bundle, so the Dockerfiles' `pip install` and `npm ci` reach
# their registries as the machine does.
#
# An image's reference is localhost/ticclip-<name>:<hash of its inputs> (the Dockerfile, the files of
# its build context that git tracks or does not ignore, the base's recipe): a warm run builds
# nothing and imports nothing. buildah's storage (its layer cache too) and a stamp per hash live
# under $CACHE/images; the archive handed to containerd is removed once imported.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${TICCLIP_CACHE:-$HOME/.cache/continual-clip-operator}"
IMAGES="$CACHE/images"
mkdir -p "$IMAGES"
BUILDAH=(buildah --root "$IMAGES/buildah/root" --runroot "$IMAGES/buildah/run" --storage-driver overlay)
SUITE=bookworm
MIRROR="${TICCLIP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { echo "[images] $*" >&2; }

# One buildah at a time on a machine (clones share the storage).
exec 8>"$IMAGES/build.lock"
flock 8

node_binary() { readlink -f "$ROOT/node_modules/.bin/node"; }
require_node() {
  [[ -x $(node_binary) ]] || { echo "node_modules/.bin/node is missing: run npm ci first" >&2; exit 1; }
  command -v npm >/dev/null || { echo "npm is missing" >&2; exit 1; }
}
npm_dir() { dirname "$(dirname "$(readlink -f "$(command -v npm)")")"; }

# The base's recipe: what makes two bases the same.
base_recipe() {
  echo "local CAs: $(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-12)"
  case $1 in
    trainer) echo "debootstrap --variant=minbase $SUITE $MIRROR; pip cert" ;;
    operator)
      echo "debootstrap --variant=minbase $SUITE $MIRROR ca-certificates; npm cafile"
      "$(node_binary)" --version
      sha256sum "$(node_binary)" | cut -d' ' -f1
      "$(npm_dir)/bin/npm-cli.js" --version 2>/dev/null || node "$(npm_dir)/bin/npm-cli.js" --version
      ;;
  esac
}

base_ref() { echo "localhost/ticclip-base-$1:$(base_recipe "$1" | sha256sum | cut -c1-12)"; }

has_image() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

build_base() {
  local kind=$1 ref; ref=$(base_ref "$kind")
  has_image "$ref" && return 0
  log "base $ref (debootstrap $SUITE)"
  local start=$SECONDS c mnt
  c=$("${BUILDAH[@]}" from scratch)
  mnt=$("${BUILDAH[@]}" mount "$c")
  local include=()
  [[ $kind == operator ]] && include=(--include=ca-certificates)
  debootstrap --variant=minbase "${include[@]}" "$SUITE" "$mnt" "$MIRROR" >"$IMAGES/debootstrap-$kind.log" 2>&1 ||
    { tail -20 "$IMAGES/debootstrap-$kind.log" >&2; return 1; }
  rm -rf "$mnt"/var/cache/apt/archives/*.deb "$mnt"/var/lib/apt/lists/*
  mkdir -p "$mnt/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/" 2>/dev/null || true
  if [[ $kind == trainer ]]; then
    # The Dockerfile's apt-get installs ca-certificates, whose bundle then holds the local CAs too.
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$mnt/etc/pip.conf"
  fi
  if [[ $kind == operator ]]; then
    chroot "$mnt" update-ca-certificates >/dev/null
    mkdir -p "$mnt/usr/local/etc"
    echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$mnt/usr/local/etc/npmrc"
    install -m 0755 "$(node_binary)" "$mnt/usr/local/bin/node"
    mkdir -p "$mnt/usr/local/lib/node_modules"
    cp -a "$(npm_dir)" "$mnt/usr/local/lib/node_modules/npm"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  fi
  "${BUILDAH[@]}" umount "$c" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$c"
  "${BUILDAH[@]}" commit --quiet --rm "$c" "$ref" >/dev/null
  log "base $ref built in $((SECONDS - start))s"
}

# context_hash DIR FILE...: the content of the listed files of the build context, by path.
files_hash() {
  (cd "$ROOT" && git ls-files -co --exclude-standard -z -- "$@" | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
}

# name -> Dockerfile, context, build args, and the files whose content makes the image.
image_inputs() {
  case $1 in
    trainer)
      DOCKERFILE=trainer-image/Dockerfile CONTEXT=trainer-image TARGET=""
      BUILD_ARGS=(--build-arg "BASE_IMAGE=$(base_ref trainer)")
      INPUTS=(trainer-image/Dockerfile trainer-image/requirements.txt trainer-image/pyproject.toml trainer-image/src)
      ;;
    operator)
      require_node
      DOCKERFILE=operator/Dockerfile CONTEXT=. TARGET=cpu
      BUILD_ARGS=(--build-arg "NODE_IMAGE=$(base_ref operator)")
      INPUTS=(operator/Dockerfile package.json package-lock.json .npmrc operator)
      ;;
    *) echo "unknown image $1" >&2; exit 2 ;;
  esac
}

image_ref() {
  image_inputs "$1"
  local h; h=$( { base_ref "$1"; printf '%s\n' "$TARGET" "${BUILD_ARGS[@]}"; files_hash "${INPUTS[@]}"; } | sha256sum | cut -c1-12)
  echo "localhost/ticclip-$1:$h"
}

build_image() {
  local name=$1 ref=$2
  has_image "$ref" && return 0
  build_base "$name"
  image_inputs "$name"
  local dir="$IMAGES/${ref##*:}-$name" start=$SECONDS
  mkdir -p "$dir"
  log "building $ref from $DOCKERFILE (log: $dir/build.log)"
  local target=()
  [[ -n $TARGET ]] && target=(--target "$TARGET")
  # --layers: a change to the sources reuses the dependency layers (the trainer's CUDA torch).
  if ! (cd "$ROOT" && "${BUILDAH[@]}" bud --layers --pull=false --isolation chroot --network host \
    -f "$DOCKERFILE" "${target[@]}" "${BUILD_ARGS[@]}" -t "$ref" "$CONTEXT") >"$dir/build.log" 2>&1; then
    tail -30 "$dir/build.log" >&2
    return 1
  fi
  echo "$((SECONDS - start))" >"$dir/build-seconds"
  log "built $ref in $((SECONDS - start))s"
}

# import REF ADDR: hands a built image to the node's containerd, through an archive.
import_image() {
  local ref=$1 addr=$2
  local ctr=(ctr --address "$addr" -n k8s.io)
  "${ctr[@]}" images ls -q | grep -x "$ref" >/dev/null && return 0
  local archive="$IMAGES/${ref##*/}.tar" start=$SECONDS
  archive=${archive//:/-}
  rm -f "$archive"
  local rc=0
  "${BUILDAH[@]}" push --quiet "$ref" "docker-archive:$archive:$ref" >/dev/null &&
    "${ctr[@]}" images import "$archive" >/dev/null || rc=$?
  rm -f "$archive"
  ((rc == 0)) || return $rc
  log "imported $ref in $((SECONDS - start))s"
}

case "${1:-}" in
  ref) image_ref "${2:?image name}" ;;
  load)
    ref=$(image_ref "${2:?image name}")
    build_image "$2" "$ref"
    import_image "$ref" "${3:?containerd address}"
    echo "$ref"
    ;;
  pause)
    bin=${2:?pause binary} ref=${3:?reference}
    archive="$IMAGES/pause-${ref##*:}.tar"
    if [[ ! -f $archive ]]; then
      c=$("${BUILDAH[@]}" from scratch)
      "${BUILDAH[@]}" copy "$c" "$bin" /pause >/dev/null
      "${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
      "${BUILDAH[@]}" commit --quiet --rm "$c" "$ref" >/dev/null
      "${BUILDAH[@]}" push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >/dev/null
      mv "$archive.tmp" "$archive"
    fi
    echo "$archive"
    ;;
  *) echo "usage: $0 ref NAME | load NAME CONTAINERD_ADDRESS | pause BINARY REF" >&2; exit 2 ;;
esac
