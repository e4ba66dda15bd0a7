#!/usr/bin/env bash
# Runs a command against the local cluster: brings it up (building it once), exports its settings
# (KUBECONFIG, KUBECTL, S3_*) and the trainer venv (TICCLIP_VENV), then execs the command.
# `npm run demo` and `npm run experiment:tic` use it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/cluster.sh up
eval "$(bash dev/cluster.sh env)"
TICCLIP_VENV="$(bash dev/python-venv.sh)"
export TICCLIP_VENV
exec "$@"
