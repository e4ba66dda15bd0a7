#!/usr/bin/env bash
# `npm run demo`: brings the local cluster up (building it once), makes the trainer venv, and runs
# dev/demo.ts: three synthetic slices -> three warm-started rounds of the tiny CPU model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/cluster.sh up
eval "$(bash dev/cluster.sh env)"
TICCLIP_VENV="$(bash dev/python-venv.sh)"
export TICCLIP_VENV
node dev/demo.ts
