#!/usr/bin/env bash
# The project's test command (`npm test`): type check, unit tests, integration tests against the
# local cluster and S3 server (started here if not running), and the trainer's pytest suite.
# Every suite runs even if an earlier one failed; the exit code says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash dev/cluster.sh up || { echo "local cluster failed to start" >&2; exit 1; }
# The real tools the tests run (helm, promtool, kustomize...): built now, not inside a test.
bash dev/build-binaries.sh || { echo "building the test tools failed" >&2; exit 1; }
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
# The trainer's pytest suite (CPU-bound) runs beside the integration tests (mostly waiting on the
# cluster), which saves its whole wall time; its output is printed once it ends. The fault-injection
# test kills MinIO, which the trainer tests use, so it runs after them, on its own.
shopt -s globstar
fault_tests=(test/integration/faults.test.ts)
integration_tests=()
for f in test/integration/**/*.test.ts; do
  [[ " ${fault_tests[*]} " == *" $f "* ]] || integration_tests+=("$f")
done
trainer_log="$(mktemp)"
echo "=== trainer (in the background; its output follows the integration tests)"
npm run -s test:trainer -- --durations=10 >"$trainer_log" 2>&1 &
trainer_pid=$!
run integration node --test --test-concurrency=1 "${integration_tests[@]}"
trainer_rc=0
wait "$trainer_pid" || trainer_rc=$?
echo "=== trainer"
cat "$trainer_log"
rm -f "$trainer_log"
((trainer_rc == 0)) || failed+=(trainer)
run faults node --test --test-concurrency=1 "${fault_tests[@]}"
# Every namespace a test created is deleted when its test file exits; none may outlive the suite or
# hang in Terminating (a namespace controller busy with leftovers is load every later test shares).
run namespaces bash dev/test-namespaces.sh

if ((${#failed[@]})); then
  echo "FAILED suites: ${failed[*]}" >&2
  exit 1
fi
echo "all suites passed"
