#!/usr/bin/env bash
# Headless Chromium for the report test (test/integration/report-html.test.ts): Debian's package,
# installed once with apt when missing (dev/apt-install.sh). Prints the binary's path.
set -euo pipefail
for c in "${CHROMIUM:-}" chromium chromium-browser; do
  if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1; then command -v "$c"; exit 0; fi
done
bash "$(dirname "$0")/apt-install.sh" "the report test (set CHROMIUM to use another)" chromium
command -v chromium
