#!/usr/bin/env bash
# Waits (up to TICCLIP_NAMESPACE_WAIT seconds, default 300) until no namespace created by a test
# (label ticclip.dev/test-namespace) is left and none at all is Terminating; otherwise lists what is
# left, with the pods that hold each one, and exits 1. Needs KUBECTL and KUBECONFIG (dev/cluster.sh env).
set -uo pipefail
: "${KUBECTL:?}" "${KUBECONFIG:?}"
wait_s=${TICCLIP_NAMESPACE_WAIT:-300}
leftovers() {
  "$KUBECTL" get namespaces -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.metadata.labels.ticclip\.dev/test-namespace}{"\n"}{end}' |
    awk '$2 == "Terminating" || $3 == "true" {print $1 " " $2}'
}
start=$SECONDS
while :; do
  left="$(leftovers)" || { echo "namespaces: kubectl failed" >&2; exit 1; }
  if [[ -z $left ]]; then
    echo "namespaces: no test namespace left, none Terminating (waited $((SECONDS - start)) s)"
    exit 0
  fi
  ((SECONDS - start >= wait_s)) && break
  sleep 5
done
echo "namespaces: still present ${wait_s} s after the suite:" >&2
echo "$left" >&2
while read -r ns _; do
  "$KUBECTL" get pods -n "$ns" -o custom-columns='POD:.metadata.name,PHASE:.status.phase,NODE:.spec.nodeName,DELETING:.metadata.deletionTimestamp,FINALIZERS:.metadata.finalizers' >&2
done <<<"$left"
exit 1
