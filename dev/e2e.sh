#!/usr/bin/env bash
# The e2e tier (`npm run test:e2e`, adr/0004): a cluster of its own with a real node
# (`dev/cluster.sh up --node`), our images built from our Dockerfiles and imported into the node's
# containerd (dev/node/images.sh), then test/e2e/*.test.ts against them.
#   dev/e2e.sh                 run the suite (extra arguments go to node --test, e.g. a file)
#   dev/e2e.sh up|down|env     only bring the e2e cluster up, stop it, print its exports
# Its own state directory and ports, so it runs next to the fast tier's cluster (dev/cluster.sh's
# defaults) on one machine; every setting can be overridden the same way (TICCLIP_*).
set -euo pipefail
cd "$(dirname "$0")/.."
export TICCLIP_STATE_DIR="${TICCLIP_STATE_DIR:-$PWD/.local/e2e-cluster}"
export TICCLIP_ETCD_PORT="${TICCLIP_ETCD_PORT:-33790}"
export TICCLIP_APISERVER_PORT="${TICCLIP_APISERVER_PORT:-36443}"
export TICCLIP_KCM_PORT="${TICCLIP_KCM_PORT:-36444}"
export TICCLIP_S3_PORT="${TICCLIP_S3_PORT:-39000}"
export PATH="$PWD/node_modules/.bin:$PATH"

log() { echo "[e2e] $*" >&2; }

up() {
  local start=$SECONDS
  bash dev/cluster.sh up --node
  log "cluster and node up in $((SECONDS - start))s"
  eval "$(bash dev/cluster.sh env)"
  start=$SECONDS
  local trainer operator
  trainer=$(bash dev/node/images.sh load trainer "$TICCLIP_CONTAINERD_ADDRESS")
  operator=$(bash dev/node/images.sh load operator "$TICCLIP_CONTAINERD_ADDRESS")
  printf 'export TICCLIP_TRAINER_IMAGE=%s\nexport TICCLIP_OPERATOR_IMAGE=%s\n' "$trainer" "$operator" \
    >"$TICCLIP_STATE_DIR/images.env"
  log "images ready in $((SECONDS - start))s: $trainer $operator"
}

env_exports() {
  bash dev/cluster.sh env
  cat "$TICCLIP_STATE_DIR/images.env"
  echo "export HELM=$(bash dev/build-binaries.sh --path helm)"
}

case "${1:-}" in
  up) up ;;
  down) bash dev/cluster.sh down ;;
  env) env_exports ;;
  *)
    up
    eval "$(env_exports)"
    files=("$@")
    ((${#files[@]})) || files=(test/e2e/*.test.ts)
    start=$SECONDS
    rc=0
    node --test --test-concurrency=1 "${files[@]}" || rc=$?
    log "suite took $((SECONDS - start))s"
    exit $rc
    ;;
esac
