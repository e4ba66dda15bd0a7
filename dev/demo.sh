#!/usr/bin/env bash
# `npm run demo`: brings the local cluster up (building it once), makes the trainer venv, and runs
# dev/demo.ts: three synthetic slices -> three warm-started rounds of the tiny CPU model, then a
# short summary and the HTML report (.local/demo/report.html).
set -euo pipefail
exec bash "$(dirname "$0")/with-cluster.sh" node dev/demo.ts
