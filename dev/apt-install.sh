#!/usr/bin/env bash
# Installs Debian packages with apt (once: the callers check first), for the dev/ scripts that need
# a Debian package (chromium.sh, git-http-backend.sh, node/packages.sh). CI runs as root with apt;
# elsewhere sudo is used. Never starts a service a package ships (invoke-rc.d is told not to).
#   bash dev/apt-install.sh WHY PACKAGE...
set -euo pipefail
why=${1:?what the packages are for}; shift
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$why: missing Debian packages ($*) and apt-get is not available: install them by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages for $why (once): $*" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq "$@" >&2
