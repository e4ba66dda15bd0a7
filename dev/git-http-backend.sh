#!/usr/bin/env bash
# Git's own smart-HTTP backend (`git http-backend`, a CGI program in Debian's git package) for the
# loopback Git server of the GitOps tests (test/support/git-server.ts). Installed once with apt when
# missing (CI runs as root with apt). Prints the program's path.
set -euo pipefail
find_backend() {
  command -v git >/dev/null 2>&1 || return 1
  local p
  p="$(git --exec-path)/git-http-backend"
  [ -x "$p" ] && echo "$p"
}
if find_backend; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "git (with git-http-backend) is missing and apt-get is not available: install git" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's git package (once)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq git >&2
find_backend
