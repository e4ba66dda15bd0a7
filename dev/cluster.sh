#!/usr/bin/env bash
# The local cluster: etcd + kube-apiserver + kube-controller-manager + MinIO as loopback processes.
#   dev/cluster.sh up [--node]|down|status|env
# Binaries come from dev/build-binaries.sh (cached outside git). State (certs, data, logs,
# kubeconfig, s3.env) lives in $TICCLIP_STATE_DIR, default <repo>/.local/cluster.
# `up --node` makes it a cluster with a real node (dev/node/node.sh: containerd, kubelet, scheduler,
# kube-proxy, CoreDNS; the e2e tier, dev/e2e.sh): the control plane and MinIO then listen on the
# node's address, which pods reach, instead of loopback, and authorize kubelets (Node,RBAC). A state
# directory stays a node cluster once it is one (its node-mode file); `down` stops the node too.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
source "$HERE/versions.env"

CACHE="${TICCLIP_CACHE:-$HOME/.cache/continual-clip-operator}"
STATE="${TICCLIP_STATE_DIR:-$ROOT/.local/cluster}"
ETCD_PORT="${TICCLIP_ETCD_PORT:-23790}"
APISERVER_PORT="${TICCLIP_APISERVER_PORT:-16443}"
KCM_PORT="${TICCLIP_KCM_PORT:-16444}"
S3_PORT="${TICCLIP_S3_PORT:-19000}"
S3_USER=ticclip
S3_PASSWORD=ticclip-secret-key

ETCD_BIN="$CACHE/bin/etcd-$ETCD_VERSION/etcd"
K8S_DIR="$CACHE/bin/kubernetes-$KUBERNETES_VERSION"
MINIO_BIN="$CACHE/bin/minio-$MINIO_VERSION/minio"
KUBECTL="$K8S_DIR/kubectl"
KUBECONFIG_FILE="$STATE/kubeconfig"
SERVICE_CIDR="${TICCLIP_SERVICE_CIDR:-10.96.0.0/16}"
NODE_MODE=false
[[ ${1:-} == up && ${2:-} == --node ]] && NODE_MODE=true
[[ -f $STATE/node-mode ]] && NODE_MODE=true
# Where the API server and MinIO listen: loopback, or the node's address (pods cannot reach
# 127.0.0.1 of the host; the address of the default route they can).
API_HOST=127.0.0.1
if $NODE_MODE; then
  source "$HERE/node/node.sh"
  API_HOST=$NODE_IP
fi

log() { echo "[cluster] $*" >&2; }

pid_alive() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

# start NAME CMD...: runs CMD detached (own session, so `down` and a parent exit don't race),
# logs to $STATE/logs/NAME.log, and records its pid and command line. Reuses a running one that was
# started with the same command line; one started with another (an older checkout's flags) is
# restarted, so a changed flag here always takes effect.
start() {
  local name=$1; shift
  local args; args="$(printf '%q ' "$@")"
  if pid_alive "$name"; then
    if [[ "$(cat "$STATE/$name.args" 2>/dev/null)" == "$args" ]]; then
      log "$name already running (pid $(cat "$STATE/$name.pid"))"; return 0
    fi
    log "$name runs with other flags: restarting it"
    stop_one "$name"
  fi
  mkdir -p "$STATE/logs"
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
  printf '%s' "$args" >"$STATE/$name.args"
  log "started $name (pid $!)"
}

wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "$what not healthy after ${timeout}s; last log lines:"
      tail -n 30 "$STATE/logs/$what.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

gen_certs() {
  local d="$STATE/pki"
  [[ -f $d/done ]] && return 0
  mkdir -p "$d" && cd "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=ticclip-local-ca" 2>/dev/null
  # client_or_server NAME SUBJECT [SAN]
  sign() {
    local name=$1 subj=$2 san=${3:-}
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
    if [[ -n $san ]]; then
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$name.ext"
    else
      printf 'extendedKeyUsage=clientAuth\n' >"$name.ext"
    fi
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 3650 -extfile "$name.ext" 2>/dev/null
  }
  sign apiserver "/CN=kube-apiserver" "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  sign admin "/O=system:masters/CN=ticclip-admin"
  sign controller-manager "/CN=system:kube-controller-manager"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  touch done
  cd - >/dev/null
}

write_kubeconfig() { # FILE USER
  local file=$1 user=$2 d="$STATE/pki"
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ticclip-local
  cluster:
    server: https://$API_HOST:$APISERVER_PORT
    certificate-authority: $d/ca.crt
users:
- name: $user
  user:
    client-certificate: $d/$user.crt
    client-key: $d/$user.key
contexts:
- name: ticclip-local
  context: {cluster: ticclip-local, user: $user, namespace: default}
current-context: ticclip-local
KC
}

up() {
  # Only what the cluster runs (the test tools are built when a test first asks for them).
  bash "$HERE/build-binaries.sh" etcd kubernetes minio
  mkdir -p "$STATE"
  gen_certs
  # The node's control-plane flags (dev/node/node.sh), or none.
  local apiserver_node=() kcm_node=() apiserver_cert=apiserver authorization=RBAC
  if $NODE_MODE; then
    node_prepare
    apiserver_cert=apiserver-node authorization=Node,RBAC
    apiserver_node=("${NODE_APISERVER_FLAGS[@]}")
    kcm_node=("${NODE_KCM_FLAGS[@]}")
  fi
  write_kubeconfig "$KUBECONFIG_FILE" admin
  write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
  local d="$STATE/pki"

  start etcd "$ETCD_BIN" --name ticclip --data-dir "$STATE/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "ticclip=http://127.0.0.1:$((ETCD_PORT + 10))" \
    --listen-metrics-urls "http://127.0.0.1:$((ETCD_PORT + 20))" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn

  start minio env MINIO_ROOT_USER=$S3_USER MINIO_ROOT_PASSWORD=$S3_PASSWORD MINIO_BROWSER=off \
    MINIO_UPDATE=off MINIO_CI_CD=1 "$MINIO_BIN" server --quiet --address "$API_HOST:$S3_PORT" \
    --console-address "$API_HOST:$((S3_PORT + 1))" "$STATE/minio-data"

  wait_for etcd 60 curl -sf "http://127.0.0.1:$((ETCD_PORT + 20))/health"
  start kube-apiserver "$K8S_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$API_HOST" --advertise-address "$API_HOST" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$d/$apiserver_cert.crt" --tls-private-key-file "$d/$apiserver_cert.key" \
    --client-ca-file "$d/ca.crt" --authorization-mode "$authorization" "${apiserver_node[@]}" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=false \
    --cert-dir "$STATE/apiserver-certs" --v 1
  wait_for kube-apiserver 120 curl -sf --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" \
    "https://$API_HOST:$APISERVER_PORT/readyz"

  # Each controller acts with its own service account and bootstrap RBAC role, as in a real
  # cluster (--use-service-account-credentials). Only the controllers whose behaviour the operator
  # relies on: Jobs, ownerReference garbage collection, namespaces, service accounts, finished-Job
  # TTL, and pod garbage collection. No scheduler or kubelet: pods of Jobs are run by the local
  # executor (test tooling), which never binds them to a node, so a deleted pod is finished by the
  # pod garbage collector (it force-deletes unscheduled terminating pods), as no kubelet would;
  # without it a deleted namespace with such pods stays Terminating for the life of the cluster.
  start kube-controller-manager "$K8S_DIR/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$STATE/kcm-certs" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --controllers job-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,ttl-after-finished-controller,pod-garbage-collector-controller \
    --concurrent-job-syncs 5 "${kcm_node[@]}" --v 1
  wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for minio 60 curl -sf "http://$API_HOST:$S3_PORT/minio/health/ready"

  cat >"$STATE/s3.env" <<S3
export S3_ENDPOINT=http://$API_HOST:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_USER
export AWS_SECRET_ACCESS_KEY=$S3_PASSWORD
export AWS_REGION=us-east-1
S3
  # The default ServiceAccount must exist before pods of Jobs can be admitted.
  local deadline=$((SECONDS + 60))
  until "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get serviceaccount default -n default >/dev/null 2>&1; do
    ((SECONDS > deadline)) && { log "default ServiceAccount never appeared"; return 1; }
    sleep 0.5
  done
  if $NODE_MODE; then node_up; fi
  log "ready: KUBECONFIG=$KUBECONFIG_FILE, S3 env in $STATE/s3.env"
}

stop_one() {
  local name=$1
    if pid_alive "$name"; then
      local pid; pid=$(cat "$STATE/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$STATE/$name.pid"
}

down() {
  if $NODE_MODE; then node_down; fi
  for name in kube-controller-manager kube-apiserver minio etcd; do stop_one "$name"; done
}

status() {
  local rc=0
  for name in etcd kube-apiserver kube-controller-manager minio; do
    if pid_alive "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; rc=1; fi
  done
  if $NODE_MODE; then node_status || rc=1; fi
  [[ $rc == 0 ]] && "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" version 2>/dev/null | sed 's/^/  /'
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  # Prints shell exports for tests and the operator: eval "$(dev/cluster.sh env)"
  env)
    echo "export KUBECONFIG=$KUBECONFIG_FILE"; echo "export KUBECTL=$KUBECTL"; cat "$STATE/s3.env"
    if $NODE_MODE; then node_env; fi ;;
  # Stops one component (tests use it to kill the API server); `up` starts it again.
  stop) stop_one "${2:?component name}" ;;
  *) echo "usage: $0 up|down|status|env|stop COMPONENT" >&2; exit 2 ;;
esac
