#!/usr/bin/env bash
# Headless Chromium for the report test (test/integration/report-html.test.ts): Debian's package,
# installed once with apt when missing (CI runs as root with apt). Prints the binary's path.
set -euo pipefail
for c in "${CHROMIUM:-}" chromium chromium-browser; do
  if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1; then command -v "$c"; exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and apt-get is not available: install Chromium and set CHROMIUM" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's chromium package (once)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
command -v chromium
