#!/usr/bin/env bash
# Lint and format checks (`npm run lint`): Biome for TypeScript and JSON, ruff for Python.
# `npm run format` rewrites instead of checking.
set -uo pipefail
cd "$(dirname "$0")/.."
venv="$(bash dev/python-venv.sh)" || exit 1
mode=${1:-check}
rc=0
if [[ $mode == write ]]; then
  node_modules/.bin/biome check --write . || rc=1
  "$venv/bin/ruff" check --fix . || rc=1
  "$venv/bin/ruff" format . || rc=1
else
  node_modules/.bin/biome check . || rc=1
  "$venv/bin/ruff" check . || rc=1
  "$venv/bin/ruff" format --check . || rc=1
fi
((rc == 0)) && echo "lint: biome and ruff clean"
exit $rc
