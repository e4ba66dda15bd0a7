#!/usr/bin/env bash
# Runs the trainer's pytest suite (CPU) in the project venv (dev/python-venv.sh).
# S3: S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION; when S3_ENDPOINT is unset,
# .local/cluster/s3.env (written by `dev/cluster.sh up`) is sourced if present. Under CI=true the
# S3 tests fail when no server answers. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${S3_ENDPOINT:-}" && -f "$root/.local/cluster/s3.env" ]]; then
  set -a
  # shellcheck disable=SC1091
  source "$root/.local/cluster/s3.env"
  set +a
fi
venv="$(bash "$root/dev/python-venv.sh")"
cd "$root/trainer-image"
set +e
PYTHONPATH="$root/trainer-image/src${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest -v -p no:cacheprovider tests "$@"
rc=$?
set -e
exit $rc
