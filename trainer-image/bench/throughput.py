"""Training throughput: our round loop vs open_clip's own entry point (open_clip_train.main), same
model, same synthetic data, same process. CPU: ticclip-tiny; on a GPU pass --model ViT-B-32 etc.

    S3_ENDPOINT=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
      python trainer-image/bench/throughput.py --samples 2048 --batch 64

Both are timed end to end around one in-process call (model build, data, loop; our trainer also
includes its ONNX export and uploads, reported separately from its loop-only figure). MFU is
printed on CUDA when the model's FLOPs are known (6 * params * samples as the rough estimate).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import torch  # noqa: E402

from ticclip_trainer import models, synth  # noqa: E402
from ticclip_trainer.s3io import S3, S3Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ticclip-tiny")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=512)
    args = ap.parse_args()
    from helpers import make_plan, source
    models.register()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    s3 = S3(S3Settings.from_env())
    bucket = f"ticclip-bench-{uuid.uuid4().hex[:8]}"
    s3.client.create_bucket(Bucket=bucket)
    with tempfile.TemporaryDirectory() as tmp:
        # identical shards, on S3 for us and on local disk for open_clip
        m = synth.write(f"s3://{bucket}/slices", ["2016"], args.samples, 0, args.shard_size, s3=s3)[0]
        synth.write(os.path.join(tmp, "slices"), ["2016"], args.samples, 0, args.shard_size)
        plan = make_plan(bucket, "bench/rounds/0000", [source(bucket, "2016", m)], args.samples, arch=args.model,
                         batch=args.batch, warmup=0)
        from ticclip_trainer.train import run_round
        t0 = time.perf_counter()
        assert run_round(plan) == 0
        ours_wall = time.perf_counter() - t0
        summary = json.loads(s3.get_bytes(plan["output"]["uri"] + "train_summary.json"))

        from open_clip_train.main import main as oc_main
        shards = "::".join(os.path.join(tmp, "slices", "2016", s["key"]) for s in m["shards"])
        oc_args = ["--model", args.model, "--train-data", shards, "--dataset-type", "webdataset",
                   "--train-num-samples", str(args.samples), "--batch-size", str(args.batch), "--epochs", "1",
                   "--workers", "1", "--device", device, "--precision", "amp_bf16" if device == "cuda" else "fp32",
                   "--lr", "1e-3", "--warmup", "0", "--logs", os.path.join(tmp, "oc-logs"), "--report-to", "",
                   "--save-frequency", "0", "--log-every-n-steps", "1000", "--seed", "0"]
        t0 = time.perf_counter()
        rc = oc_main(oc_args)
        oc_wall = time.perf_counter() - t0
        if rc == -1:
            raise SystemExit("open_clip_train.main returned -1")
    keys = s3.list_keys(f"s3://{bucket}/")
    s3.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    s3.client.delete_bucket(Bucket=bucket)

    n = args.samples
    print(f"\n{args.model}, {n} samples, batch {args.batch}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'trainer':<36}{'wall s':>10}{'samples/s':>12}")
    print(f"{'ticclip_trainer (whole round)':<36}{ours_wall:>10.1f}{n / ours_wall:>12.1f}")
    print(f"{'ticclip_trainer (train loop only)':<36}{summary['trainTimeSeconds']:>10.1f}"
          f"{summary['throughput']['samplesPerSecond']:>12.1f}")
    print(f"{'open_clip_train.main (whole run)':<36}{oc_wall:>10.1f}{n / oc_wall:>12.1f}")
    if device == "cuda":
        params = sum(p.numel() for p in models.create(args.model).parameters())
        peak = float(os.environ.get("PEAK_TFLOPS", "989")) * 1e12  # H100 SXM bf16 dense
        mfu = 6 * params * summary["throughput"]["samplesPerSecond"] / peak
        print(f"ticclip_trainer MFU (6*N per sample, N={params/1e6:.0f}M, peak {peak/1e12:.0f} TFLOPs): {mfu:.1%}")


if __name__ == "__main__":
    main()
