#!/usr/bin/env bash
# The throughput benchmark as one command with its own MinIO on loopback (no network needed).
#   MINIO_BIN=/path/to/minio bash trainer-image/bench/gpu.sh            # GPU: ViT-B-32, bf16, batch 256
#   MINIO_BIN=... BENCH_ARGS="--model ticclip-tiny --samples 512 --batch 64" bash trainer-image/bench/gpu.sh  # CPU
# MINIO_BIN defaults to the one dev/build-binaries.sh builds. PYTHON defaults to python3 (the GPU
# machine's, with the wheels listed in trainer-image/README.md "Benchmark"). Extra arguments go to
# throughput.py after BENCH_ARGS.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$root/dev/versions.env"
minio="${MINIO_BIN:-${TICCLIP_CACHE:-$HOME/.cache/continual-clip-operator}/bin/minio-$MINIO_VERSION/minio}"
python="${PYTHON:-python3}"
port="${BENCH_S3_PORT:-19990}"
data="$(mktemp -d)"
MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench-secret-key MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
  "$minio" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$((port + 1))" "$data" \
  >"$data.log" 2>&1 &
minio_pid=$!
trap 'kill "$minio_pid" 2>/dev/null; wait "$minio_pid" 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/minio/health/ready" >/dev/null && break
  sleep 0.5
done
export S3_ENDPOINT="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
export AWS_REGION=us-east-1
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
"$python" "$here/throughput.py" ${BENCH_ARGS:---model ViT-B-32 --samples 12288 --batch 256 --shard-size 1024} "$@"
