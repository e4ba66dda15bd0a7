# The real node of a local cluster (issue 23, adr/0004), sourced by dev/cluster.sh in node mode
# (`dev/cluster.sh up --node`): containerd + runc with CNI's bridge, the kubelet, kube-scheduler,
# kube-proxy (iptables) and CoreDNS, all as plain processes, started, health-checked and stopped by
# dev/cluster.sh next to the control plane.
#
# Everything is this cluster's own, so a node never touches another local cluster on the machine:
# its containerd socket and state under $STATE, its bridge ($TICCLIP_NODE_BRIDGE), its pod and
# service CIDRs, its cgroup root, its ports (offsets of $KCM_PORT). Images live in a containerd root
# under the cache ($CACHE/node/containerd), so a warm run imports nothing; containerd locks it, so
# two nodes on one machine cannot share it.
#
# Facts of these VMs that shape it (issue 23): cgroup v1 (the kubelet needs failCgroupV1: false, the
# cgroupfs driver and its cgroup root created in every hierarchy); no CAP_SYS_RESOURCE (runc cannot
# lower oom_score_adj: containerd's restrict_oom_score_adj); no registry (the pause image is built
# from dev/node/pause.c, our images by dev/node/images.sh).

NODE_NAME="${TICCLIP_NODE_NAME:-ticclip-node}"
NODE_IP="${TICCLIP_NODE_IP:-$(ip -4 route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}"
[[ -n $NODE_IP && $NODE_IP != 127.* ]] || { echo "[node] no default-route address for the node" >&2; exit 1; }
POD_CIDR="${TICCLIP_POD_CIDR:-10.113.0.0/24}"
# Only the e2e cluster runs a node, so its service range differs from the fast tier's default.
SERVICE_CIDR="${TICCLIP_SERVICE_CIDR:-10.112.0.0/16}"
SERVICE_PREFIX=${SERVICE_CIDR%.*/*}
CLUSTER_DNS="$SERVICE_PREFIX.10"
BRIDGE="${TICCLIP_NODE_BRIDGE:-ticclip-node0}"
KUBELET_PORT=$((KCM_PORT + 10))
KUBELET_HEALTHZ_PORT=$((KCM_PORT + 11))
SCHEDULER_PORT=$((KCM_PORT + 12))
PROXY_HEALTHZ_PORT=$((KCM_PORT + 13))
PROXY_METRICS_PORT=$((KCM_PORT + 14))
DNS_PORT=$((KCM_PORT + 15))
DNS_HEALTH_PORT=$((KCM_PORT + 16))
DNS_READY_PORT=$((KCM_PORT + 17))
CGROUP_ROOT="/ticclip-${NODE_NAME}"

NODE_BIN="$CACHE/bin/kubernetes-node-$KUBERNETES_VERSION"
COREDNS_BIN="$CACHE/bin/coredns-$COREDNS_VERSION-k8s${KUBERNETES_VERSION}/coredns"
CONTAINERD_ROOT="$CACHE/node/containerd"
CONTAINERD_SOCK="$STATE/containerd/containerd.sock"
CTR=(ctr --address "$CONTAINERD_SOCK" -n k8s.io)
PAUSE_IMAGE="localhost/ticclip-pause:$(sha256sum "$HERE/node/pause.c" | cut -c1-12)"

# Control-plane flags of a node cluster (read by dev/cluster.sh's up).
NODE_APISERVER_FLAGS=(
  --enable-admission-plugins NodeRestriction
  --kubelet-client-certificate "$STATE/pki/apiserver-kubelet-client.crt"
  --kubelet-client-key "$STATE/pki/apiserver-kubelet-client.key"
  --kubelet-preferred-address-types InternalIP
)
# Endpoints for Services, node health (taints a NotReady node), Deployments (helm's chart), and the
# kube-root-ca.crt ConfigMap every pod with a service-account token mounts.
NODE_KCM_FLAGS=(
  --controllers endpoints-controller,endpointslice-controller,node-lifecycle-controller,taint-eviction-controller,deployment-controller,replicaset-controller,root-ca-certificate-publisher-controller
)

# What the node changes on the machine (ip_forward; the kubelet's kernel tunables), saved and restored.
NODE_SYSCTLS=(net/ipv4/ip_forward vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

node_log() { echo "[node] $*" >&2; }

# node_prepare: everything the control plane needs before it starts in node mode.
node_prepare() {
  bash "$HERE/node/packages.sh"
  bash "$HERE/build-binaries.sh" node
  printf 'NODE_NAME=%s\nNODE_IP=%s\n' "$NODE_NAME" "$NODE_IP" >"$STATE/node-mode"
  node_certs
}

# sign NAME SUBJECT [SAN] with the cluster's CA (dev/cluster.sh's gen_certs made it).
node_sign() {
  local name=$1 subj=$2 san=${3:-}
  [[ -f $name.crt ]] && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
  if [[ -n $san ]]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$name.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' >"$name.ext"
  fi
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 3650 \
    -extfile "$name.ext" 2>/dev/null
}

node_certs() {
  (
    cd "$STATE/pki"
    # The API server as pods see it: the node's address and the kubernetes Service's ClusterIP.
    node_sign apiserver-node "/CN=kube-apiserver" \
      "IP:$NODE_IP,IP:127.0.0.1,IP:$SERVICE_PREFIX.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    node_sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    node_sign "node-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME"
    node_sign "kubelet-serving-$NODE_NAME" "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
    node_sign kube-scheduler "/CN=system:kube-scheduler"
    node_sign kube-proxy "/CN=system:kube-proxy"
    node_sign coredns "/CN=ticclip:coredns"
  )
  for user in "node-$NODE_NAME" kube-scheduler kube-proxy coredns; do
    write_kubeconfig "$STATE/$user.kubeconfig" "$user"
  done
}

# The cgroup v1 root the kubelet puts pods under, in every hierarchy (a new cpuset group starts with
# no CPUs or memory nodes: it gets its parent's).
node_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h && ! -L ${h%/} ]] || continue
    mkdir -p "$h$CGROUP_ROOT"
    if [[ -f ${h}cpuset.cpus ]]; then
      [[ -s $h$CGROUP_ROOT/cpuset.cpus && $(cat "$h$CGROUP_ROOT/cpuset.cpus") != "" ]] ||
        cat "${h}cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
      [[ $(cat "$h$CGROUP_ROOT/cpuset.mems") != "" ]] || cat "${h}cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

node_config() {
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/kubelet" "$CONTAINERD_ROOT"
  cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$CONTAINERD_ROOT"
state = "$STATE/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE on these VMs: runc may not lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
TOML
  # One bridge of our own; no masquerading (pods talk to the node's address and to each other only).
  cat >"$STATE/cni/net.d/10-ticclip.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "ticclip-$NODE_NAME", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
]}
JSON
  local pki="$STATE/pki"
  # Eviction and image GC thresholds are low: the disk is shared with other clusters and builds, and
  # the trainer image (CUDA torch) must never be collected between runs.
  cat >"$STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/kubelet-serving-$NODE_NAME.crt
tlsPrivateKeyFile: $pki/kubelet-serving-$NODE_NAME.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
clusterDNS: [$CLUSTER_DNS]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
YAML
}

node_pause_image() {
  "${CTR[@]}" images ls -q | grep -x "$PAUSE_IMAGE" >/dev/null && return 0
  local pause; pause=$(bash "$HERE/build-binaries.sh" --path pause)
  local archive; archive=$(bash "$HERE/node/images.sh" pause "$pause" "$PAUSE_IMAGE")
  "${CTR[@]}" images import --no-unpack=false "$archive" >/dev/null
}

# Cluster DNS: CoreDNS on the node's address (a port of this cluster's), behind the kube-dns
# Service's ClusterIP through a selector-less Service and its EndpointSlice.
node_dns_objects() {
  "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "ticclip:coredns"}
rules:
  - {apiGroups: [""], resources: [services, namespaces, pods], verbs: [list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "ticclip:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "ticclip:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "ticclip:coredns"}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: $CLUSTER_DNS
  ports:
    - {name: dns, port: 53, protocol: UDP, targetPort: $DNS_PORT}
    - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $DNS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports:
  - {name: dns, port: $DNS_PORT, protocol: UDP}
  - {name: dns-tcp, port: $DNS_PORT, protocol: TCP}
YAML
  cat >"$STATE/Corefile" <<COREFILE
.:$DNS_PORT {
  bind $NODE_IP
  errors
  health 127.0.0.1:$DNS_HEALTH_PORT
  ready 127.0.0.1:$DNS_READY_PORT
  kubernetes cluster.local in-addr.arpa ip6.arpa {
    kubeconfig $STATE/coredns.kubeconfig ticclip-local
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
    ttl 5
  }
  forward . /etc/resolv.conf
  cache 5
}
COREFILE
}

node_up() {
  node_log "node $NODE_NAME at $NODE_IP (pods $POD_CIDR on $BRIDGE, services $SERVICE_CIDR)"
  # Pods reach ClusterIPs through the node's routing (kube-proxy's DNAT), and the kubelet sets the
  # kernel tunables it wants (overcommit, panic on oops): node_down puts every one back as it was.
  if [[ ! -f $STATE/sysctl.before ]]; then
    local k
    for k in "${NODE_SYSCTLS[@]}"; do echo "$k $(cat "/proc/sys/$k")"; done >"$STATE/sysctl.before"
  fi
  echo 1 >/proc/sys/net/ipv4/ip_forward
  node_cgroups
  node_config
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for containerd 60 "${CTR[@]}" version
  node_pause_image
  node_dns_objects
  start kube-scheduler "$NODE_BIN/kube-scheduler" --kubeconfig "$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false --v 1
  start kubelet "$NODE_BIN/kubelet" --config "$STATE/kubelet/config.yaml" \
    --kubeconfig "$STATE/node-$NODE_NAME.kubeconfig" --root-dir "$STATE/kubelet/root" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  # iptables mode; it leaves the machine's conntrack limits and route_localnet alone.
  start kube-proxy "$NODE_BIN/kube-proxy" --kubeconfig "$STATE/kube-proxy.kubeconfig" \
    --hostname-override "$NODE_NAME" --proxy-mode iptables --cluster-cidr "$POD_CIDR" \
    --healthz-bind-address "127.0.0.1:$PROXY_HEALTHZ_PORT" --metrics-bind-address "127.0.0.1:$PROXY_METRICS_PORT" \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --iptables-localhost-nodeports=false --v 1
  start coredns "$COREDNS_BIN" -conf "$STATE/Corefile"
  wait_for kube-scheduler 60 curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  wait_for kubelet 120 curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  wait_for kube-proxy 60 curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
  wait_for coredns 60 curl -sf "http://127.0.0.1:$DNS_READY_PORT/ready"
  wait_for kubelet 120 node_ready
  node_log "node $NODE_NAME Ready"
}

node_ready() {
  [[ $("$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

# Stops the node's processes, then what they leave behind: the pods' containers and sandboxes (their
# network namespaces), kube-proxy's and the kubelet's iptables chains, the bridge, the cgroup root.
node_down() {
  local name
  for name in coredns kube-proxy kubelet kube-scheduler; do stop_one "$name"; done
  if pid_alive containerd; then
    local id
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop_one containerd
  # The pods' network namespaces: those holding an address of this node's pod range.
  local ns prefix=${POD_CIDR%.*/*}.
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
    if ip -n "$ns" -4 addr 2>/dev/null | grep "inet $prefix" >/dev/null; then ip netns delete "$ns" 2>/dev/null || true; fi
  done
  rm -rf "$STATE/cni/ipam"
  if [[ -x $NODE_BIN/kube-proxy ]]; then "$NODE_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  # The kubelet's own chains: its canaries, and KUBE-FIREWALL (drops non-loopback packets to 127/8).
  local t ipt c
  for ipt in iptables ip6tables; do
    for t in mangle nat filter; do
      "$ipt" -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null || true
    done
    "$ipt" -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null || true
    for c in INPUT OUTPUT; do
      while "$ipt" -D "$c" -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    "$ipt" -F KUBE-FIREWALL 2>/dev/null || true
    "$ipt" -X KUBE-FIREWALL 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
  if [[ -f $STATE/sysctl.before ]]; then
    local key value
    while read -r key value; do echo "$value" >"/proc/sys/$key"; done <"$STATE/sysctl.before"
    rm -f "$STATE/sysctl.before"
  fi
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h$CGROUP_ROOT ]] && find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # Kubelet-mounted volumes (tmpfs emptyDirs, projected tokens) of pods that never got torn down, and
  # the bind mount of its root directory onto itself the kubelet makes at start.
  if [[ -d $STATE/kubelet/root ]]; then
    { grep -o " $STATE/kubelet/root[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  return 0
}

node_status() {
  local rc=0 name
  for name in containerd kubelet kube-scheduler kube-proxy coredns; do
    if pid_alive "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; rc=1; fi
  done
  if ((rc == 0)) && ! node_ready; then echo "node $NODE_NAME: not Ready"; rc=1; fi
  return $rc
}

# Exports for the e2e tests: the node, its containerd (images are imported into it) and its ranges.
node_env() {
  echo "export TICCLIP_NODE_NAME=$NODE_NAME"
  echo "export TICCLIP_NODE_IP=$NODE_IP"
  echo "export TICCLIP_CONTAINERD_ADDRESS=$CONTAINERD_SOCK"
  echo "export TICCLIP_CLUSTER_DNS=$CLUSTER_DNS"
}
