#!/usr/bin/env bash
# The project's test command (`npm test`): type check, unit tests, integration tests against the
# local cluster and S3 server (started here if not running), and the trainer's pytest suite.
# Every suite runs even if an earlier one failed; the exit code says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash dev/cluster.sh up || { echo "local cluster failed to start" >&2; exit 1; }
eval "$(bash dev/cluster.sh env)"
# The trainer's venv (created once, cached outside the clone): integration tests run real rounds.
TICCLIP_VENV="$(bash dev/python-venv.sh)" || { echo "trainer venv setup failed" >&2; exit 1; }
export TICCLIP_VENV
# Headless Chromium for the report test (Debian's package, installed once when missing).
CHROMIUM="$(bash dev/chromium.sh)" || { echo "chromium setup failed" >&2; exit 1; }
export CHROMIUM

failed=()
run() {
  local name=$1; shift
  echo "=== $name"
  "$@" || failed+=("$name")
}
run lint npm run -s lint
run typecheck npm run -s typecheck
run unit npm run -s test:unit
run integration npm run -s test:integration
run trainer npm run -s test:trainer
# Every namespace a test created is deleted when its test file exits; none may outlive the suite or
# hang in Terminating (a namespace controller busy with leftovers is load every later test shares).
run namespaces bash dev/test-namespaces.sh

if ((${#failed[@]})); then
  echo "FAILED suites: ${failed[*]}" >&2
  exit 1
fi
echo "all suites passed"
