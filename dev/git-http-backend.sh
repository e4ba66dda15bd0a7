#!/usr/bin/env bash
# Git's own smart-HTTP backend (`git http-backend`, a CGI program in Debian's git package) for the
# loopback Git server of the GitOps tests (test/support/git-server.ts). Installed once with apt when
# missing (dev/apt-install.sh). Prints the program's path.
set -euo pipefail
find_backend() {
  command -v git >/dev/null 2>&1 || return 1
  local p
  p="$(git --exec-path)/git-http-backend"
  [ -x "$p" ] && echo "$p"
}
if find_backend; then exit 0; fi
bash "$(dirname "$0")/apt-install.sh" "the GitOps tests' Git server" git
find_backend
