#!/usr/bin/env bash
# The main job on the local default setup (`npm run demo`): local cluster + S3, the CRD, the
# operator, and the minimal example run. Stops the operator on Ctrl-C; the cluster keeps running
# (`npm run cluster:down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/cluster.sh up
eval "$(bash dev/cluster.sh env)"
"$KUBECTL" apply --server-side -f crds/
"$KUBECTL" wait --for condition=Established --timeout=60s crd/continualclipruns.ticclip.dev
mkdir -p .local
node operator/main.ts --namespaces default >.local/demo-operator.log 2>&1 &
op=$!
trap 'kill $op 2>/dev/null || true' EXIT
"$KUBECTL" apply -n default -f examples/minimal.yaml
for _ in $(seq 1 60); do
  phase=$("$KUBECTL" get ccr tiny-demo -n default -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [[ -n $phase ]] && break
  sleep 1
done
"$KUBECTL" get ccr -n default
"$KUBECTL" get events -n default --field-selector involvedObject.kind=ContinualClipRun
echo "operator log: .local/demo-operator.log"
if [[ -t 0 && -z ${CI:-} ]]; then
  echo "operator running; Ctrl-C to stop it"
  wait $op
fi
