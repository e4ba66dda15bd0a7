"""Registration speed of existing shards (register-shards), side by side in one run on the same pool:
counts from _stats.json, from the parquet (no _stats.json), from the tar headers (ranged reads;
neither), and headers plus a held-out split with its eval pack. Prints samples/s, S3 bytes read and
GET requests per shard, and the share of the shard bytes read.

    S3_ENDPOINT=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
      python trainer-image/bench/register.py --shards 8 --per-shard 1000 --image-px 256

The pool is img2dataset's layout (tests/img2dataset.py) with the benchmark's photo-like JPEGs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from img2dataset import shard_files  # noqa: E402
from throughput import COLOURS, THINGS, jpeg  # noqa: E402

from ticclip_trainer.register import register  # noqa: E402
from ticclip_trainer.s3io import S3, S3Settings  # noqa: E402


def pool_samples(shard: int, n: int, px: int) -> list[dict]:
    rng = np.random.default_rng(shard)
    out = []
    for j in range(n):
        cap = f"a photo of a {COLOURS[j % 8]} {THINGS[(j // 8) % 10]}"
        meta = {"url": f"http://example.com/{shard}/{j}.jpg", "caption": cap, "status": "success"}
        out.append({"jpg": jpeg(rng, px), "json": json.dumps(meta).encode(), "txt": cap.encode()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--image-px", type=int, default=256)
    ap.add_argument("--window", type=int, default=16 * 1024)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--eval-fraction", type=float, default=0.002)
    args = ap.parse_args()
    s3 = S3(S3Settings.from_env())
    bucket = f"ticclip-bench-{uuid.uuid4().hex[:8]}"
    s3.client.create_bucket(Bucket=bucket)
    rows = []
    try:
        t0 = time.perf_counter()
        files = [shard_files(i, pool_samples(i, args.per_shard, args.image_px)) for i in range(args.shards)]
        keep = {"stats": (".tar", "_stats.json", ".parquet"), "parquet": (".tar", ".parquet"), "headers": (".tar",)}
        keep["whole"] = keep["headers"]
        keep["eval"] = keep["stats"]
        for variant, suffixes in keep.items():
            for fs in files:
                for name, data in fs.items():
                    if name.endswith(suffixes):
                        s3.put_bytes(f"s3://{bucket}/{variant}/2021/{name}", data)
        tar_bytes = sum(len(fs[f"{i:05d}.tar"]) for i, fs in enumerate(files))
        print(
            f"pool: {args.shards} shards x {args.per_shard} samples, JPEGs of {args.image_px} px, "
            f"{tar_bytes / args.shards / 2**20:.1f} MiB per shard, written in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        for label, variant, kw in (
            ("_stats.json", "stats", {}),
            ("parquet (no _stats.json)", "parquet", {}),
            ("tar headers (neither), ranged reads", "headers", {}),
            ("tar headers (neither), --read whole", "whole", {"read": "whole"}),
            (f"headers + eval split {args.eval_fraction:g}", "eval", {"eval_fraction": args.eval_fraction}),
        ):
            r = register(f"s3://{bucket}/{variant}/2021/", window=args.window, parallel=args.parallel, s3=s3, **kw)
            assert r["samples"] + r["heldOut"] == args.shards * args.per_shard, r
            rows.append((label, r))
            print(f"{label}: {r['samplesPerSecond']:.0f} samples/s", flush=True)
    finally:
        keys = s3.list_keys(f"s3://{bucket}/")
        for i in range(0, len(keys), 1000):
            s3.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
        s3.client.delete_bucket(Bucket=bucket)
    print(
        f"\nregister-shards, {args.shards} shards x {args.per_shard} samples, window {args.window} B, "
        f"{args.parallel} shards at once, {os.cpu_count()} CPUs, S3 {os.environ.get('S3_ENDPOINT')}"
    )
    print("| counts from | samples/s | S3 bytes read per shard | GETs per shard | share of shard bytes |")
    print("|---|---|---|---|---|")
    for label, r in rows:
        rd = r["read"]
        print(
            f"| {label} | {r['samplesPerSecond']:.0f} | {rd['bytesPerShard'] / 1024:.1f} KiB | "
            f"{rd['requestsPerShard']:.0f} | {rd['shareOfShardBytes']:.2%} |"
        )
    base = rows[0][1]["samplesPerSecond"]
    print("speed vs _stats.json: " + ", ".join(f"{lbl} {r['samplesPerSecond'] / base:.3f}x" for lbl, r in rows[1:]))


if __name__ == "__main__":
    main()
