#!/usr/bin/env bash
# The real node's Debian packages (issue 23, adr/0004): the container runtime (containerd, runc), CNI
# plugins, the kernel-facing tools the kubelet and kube-proxy call (iptables, conntrack, ip), the
# image tools (buildah, debootstrap) and a C compiler for the pause binary. Installed once with apt
# when any is missing (dev/apt-install.sh); dev/cluster.sh calls it on every `up --node`.
# Debian's containerd package ships a service unit; the node never uses it (dev/node/node.sh runs its
# own containerd with its own socket and root), and no service is started.
set -euo pipefail
need=()
for p in containerd runc containernetworking-plugins iptables conntrack iproute2 buildah debootstrap \
  gcc libc6-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
((${#need[@]} == 0)) || bash "$(dirname "$0")/../apt-install.sh" "the real node" "${need[@]}"
