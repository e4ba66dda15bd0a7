"""Training throughput, measured side by side in one run on the same machine, model and shards:

  1. our loader alone        (data.RoundBatches in `--workers` processes, shards from S3)
  2. open_clip's pipeline    (open_clip_train.data.get_wds_dataset, same workers, shards from disk)
  3. our round               (train.run_round: loader + step; samples/s over its training loop)
  4. open_clip_train.main    (same model, batch, workers; samples/s over its train_one_epoch)
  5. the ceiling             (the same model, AdamW and ClipLoss on synthetic tensors already on the
                              device, eager and torch.compile'd)

plus the ratios ours/open_clip and ours/ceiling, our data-wait share, and FLOPs per sample counted
with torch.utils.flop_counter.FlopCounterMode on one real step (forward + backward), with MFU on CUDA.
Shards hold realistic JPEGs (smooth random scenes with texture, >= 256 px, ~15-20 KiB at quality 90).

CPU (this repo's tests' machine), the tiny model:
    S3_ENDPOINT=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
      python trainer-image/bench/throughput.py --model ticclip-tiny --samples 2048 --batch 64 --workers 1
GPU (one H100/H200, ViT-B-32, bf16, batch 256), under 5 minutes, no network: see README "Benchmark".
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import random
import sys
import tarfile
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ticclip_trainer import models  # noqa: E402
from ticclip_trainer.s3io import S3, S3Settings  # noqa: E402

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
THINGS = ["dog", "cat", "car", "tree", "house", "boat", "bird", "flower", "mountain", "street"]


def jpeg(rng: np.random.Generator, px: int) -> bytes:
    """A photo-like JPEG: smooth random colour field, a few blobs, sensor-like noise."""
    w, h = px + int(rng.integers(0, px // 4)), px
    field = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    arr = np.asarray(field, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(3):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(px // 10, px // 3)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        arr[mask] = arr[mask] * 0.4 + rng.integers(0, 256, 3) * 0.6
    arr += rng.normal(0, 6, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_shards(folder: str, samples: int, shard_size: int, px: int, bad_fraction: float = 0.0) -> list[dict]:
    """Shards of `samples` good samples; with bad_fraction, bad ones (tests/img2dataset.py BAD, each
    kind in turn) are added so that they are that fraction of all samples."""
    from img2dataset import BAD

    rng = np.random.default_rng(0)
    kinds = list(BAD.values())
    every = round(1 / bad_fraction) if bad_fraction else 0
    os.makedirs(folder, exist_ok=True)
    shards, i, bad = [], 0, 0
    while i < samples:
        n = min(shard_size, samples - i)
        key = f"shard-{len(shards):05d}.tar"
        with tarfile.open(os.path.join(folder, key), "w") as tar:
            for j in range(i, i + n):
                cap = f"a photo of a {COLOURS[j % 8]} {THINGS[(j // 8) % 10]}".encode()
                members = [(f"{j:08d}", {"jpg": jpeg(rng, px), "txt": cap})]
                if every and j % (every - 1) == every - 2:
                    members.append((f"{j:08d}b", kinds[bad % len(kinds)](bad)))
                    bad += 1
                for k, parts in members:
                    for ext, data in parts.items():
                        info = tarfile.TarInfo(f"{k}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        shards.append({"key": key, "samples": n, "bytes": os.path.getsize(os.path.join(folder, key))})
        i += n
    return shards


def per_sample_cost(arch: str, px: int, n: int = 200) -> dict:
    """Microseconds the loader spends on one sample of each kind (caption parsing and image decode,
    in this process): a bad sample must not cost more than a good one."""
    from img2dataset import BAD

    from ticclip_trainer.data import SkippedSample, decode_image, sample_fields
    from ticclip_trainer.preprocess import Preprocessing

    prep = Preprocessing.for_model(arch)
    kinds = {"good": {"jpg": jpeg(np.random.default_rng(1), px), "txt": b"a photo"}}
    kinds.update({k: make(0) for k, make in BAD.items()})
    out = {}
    for name, parts in kinds.items():
        t0 = time.perf_counter()
        for _ in range(n):
            try:
                img, _cap = sample_fields(parts)
                decode_image(prep, img)
            except SkippedSample:
                pass
        out[name] = (time.perf_counter() - t0) / n * 1e6
    return out


class _LoaderOnly(Exception):
    """--loader-only: stop after the loader rows."""


def flops_per_sample(model, prep, batch: int, device) -> float:
    from open_clip import ClipLoss
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, 3, prep.image_size, prep.image_size, device=device)
    t = torch.randint(0, 49408, (batch, prep.context_length), device=device)
    with FlopCounterMode(display=False) as fc:
        f_i, f_t, s = model(x, t)[:3]
        ClipLoss()(f_i, f_t, s).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / batch


def ceiling(arch: str, plan: dict, batch: int, steps: int, device, compiled: bool) -> float:
    """Samples/s of our step on synthetic tensors already on the device (no data path at all)."""
    from open_clip import ClipLoss

    from ticclip_trainer.preprocess import Preprocessing
    from ticclip_trainer.train import make_optimizer

    torch.manual_seed(0)
    model = models.create(arch).to(device).train()
    prep = Preprocessing.for_model(arch)
    opt = make_optimizer(model, plan, fused=device.type == "cuda")
    fwd = torch.compile(model) if compiled else model
    loss_fn = ClipLoss()
    x = torch.randn(batch, 3, prep.image_size, prep.image_size, device=device)
    t = torch.randint(1, 49407, (batch, prep.context_length), device=device)
    cuda = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def step():
        with amp:
            f_i, f_t, s = fwd(x, t)[:3]
            loss = loss_fn(f_i, f_t, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch / (time.perf_counter() - t0)


def our_loader(
    s3_settings,
    shards_meta,
    bucket,
    arch,
    batch,
    steps,
    workers,
    jpeg_draft=True,
    folder="bench",
    skipped=None,
    shuffle_window=None,
) -> float:
    from ticclip_trainer.data import RoundBatches, Shard, SkipBound, SkipStats, StreamConfig, StreamState, make_loader
    from ticclip_trainer.preprocess import Preprocessing
    from ticclip_trainer.settings import DEFAULT_OPEN_SHARDS, DEFAULT_SHUFFLE_WINDOW

    shards = [
        Shard(0, f"s3://{bucket}/{folder}/{s['key']}", s["samples"], f"shards[{i}]") for i, s in enumerate(shards_meta)
    ]
    cfg = StreamConfig(max(1, workers), DEFAULT_OPEN_SHARDS, shuffle_window or DEFAULT_SHUFFLE_WINDOW)
    prep = dataclasses.replace(Preprocessing.for_model(arch), jpeg_draft=jpeg_draft)
    rb = RoundBatches(
        s3_settings,
        shards,
        [1.0] * len(shards),
        1,
        prep,
        0,
        0,
        [batch] * steps,
        0,
        [StreamState.initial(cfg.open_shards)] * cfg.streams,
        cfg,
        bound=SkipBound(0.05, batch * steps),
    )
    t0 = time.perf_counter()
    n, stats = 0, SkipStats()
    for b in make_loader(rb, workers, pin_memory=torch.cuda.is_available()):
        if "error" in b:
            raise b["error"]
        n += b["images"].shape[0]
        stats.merge(SkipStats.from_state(b["skipped"]))
    rate = n / (time.perf_counter() - t0)
    if skipped is not None:
        skipped.update(stats.by_reason)
    return rate


def open_clip_args(arch, shard_paths, samples, batch, workers, device, logs) -> list[str]:
    return [
        "--model",
        arch,
        "--train-data",
        "::".join(shard_paths),
        "--dataset-type",
        "webdataset",
        "--train-num-samples",
        str(samples),
        "--batch-size",
        str(batch),
        "--epochs",
        "1",
        "--workers",
        str(workers),
        "--device",
        device,
        "--precision",
        "amp_bf16" if device == "cuda" else "fp32",
        "--lr",
        "1e-3",
        "--warmup",
        "0",
        "--logs",
        logs,
        "--report-to",
        "",
        "--save-frequency",
        "0",
        "--log-every-n-steps",
        "1000000",
        "--seed",
        "0",
    ]


def open_clip_pipeline(argv: list[str], arch: str) -> float:
    import open_clip
    from open_clip_train.data import get_wds_dataset
    from open_clip_train.params import parse_args

    args = parse_args(argv)
    args.world_size, args.rank, args.distributed = 1, 0, False
    _, preprocess_train, _ = open_clip.create_model_and_transforms(arch, pretrained=None)
    data = get_wds_dataset(args, preprocess_train, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer(arch))
    t0 = time.perf_counter()
    n = sum(images.shape[0] for images, _texts in data.dataloader)
    return n / (time.perf_counter() - t0)


def open_clip_main(argv: list[str]) -> float:
    """Samples/s over open_clip's train_one_epoch (its model build and startup not counted)."""
    import open_clip_train.main as oc

    timed = {}
    inner = oc.train_one_epoch

    def train_one_epoch(model, data, *a, **k):
        t0 = time.perf_counter()
        out = inner(model, data, *a, **k)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        timed["s"], timed["n"] = time.perf_counter() - t0, data["train"].dataloader.num_samples
        return out

    oc.train_one_epoch = train_one_epoch
    try:
        if oc.main(argv) == -1:
            raise SystemExit("open_clip_train.main returned -1")
    finally:
        oc.train_one_epoch = inner
    return timed["n"] / timed["s"]


def progress_cost(plan: dict, s3: S3, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per training step of the same round without progress reporting and with a report after
    every step (TICCLIP_PROGRESS_SECONDS=0: the worst case; the default writes one per 30 s), in ABBA order."""
    from ticclip_trainer.train import run_round

    runs: dict[str, list[float]] = {"0": [], "1": []}
    for r in range(repeats * 2):
        flag = ("0", "1", "1", "0")[r % 4]
        os.environ["TICCLIP_PROGRESS"], os.environ["TICCLIP_PROGRESS_SECONDS"] = flag, "0"
        p = json.loads(json.dumps(plan))
        p["output"]["uri"] = plan["output"]["uri"].rstrip("/") + f"-progress-{r}/"
        assert run_round(p) == 0
        summary = json.loads(s3.get_bytes(p["output"]["uri"] + "train_summary.json"))
        runs[flag].append(summary["trainTimeSeconds"] / summary["steps"])
        print(f"progress {'on ' if flag == '1' else 'off'}: {runs[flag][-1] * 1e3:.2f} ms/step", flush=True)
    return runs["0"], runs["1"]


def progress_call_cost(calls: int = 20000) -> dict:
    """Host time of Progress.step per training step (what the loop pays), with the default 30 s
    interval and with a report after every step (its PUT a no-op: the writer thread's cost apart)."""
    from ticclip_trainer.progress import Progress

    loss = torch.tensor(1.0)
    out = {}
    for label, interval in (("default", 30.0), ("every_step", 0.0)):
        p = Progress(lambda uri, body: None, "u", calls * 32, calls, interval)
        p.phase("training")
        t0 = time.perf_counter()
        for _ in range(calls):
            p.step(32, 0.001, loss, 1e-3)
        out[label] = (time.perf_counter() - t0) / calls * 1e6
        p.flush()
    return out


def main() -> None:
    from ticclip_trainer.settings import default_workers

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ticclip-tiny")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=default_workers(), help="loader workers, ours and open_clip's")
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--image-px", type=int, default=256)
    ap.add_argument("--ceiling-steps", type=int, default=20)
    ap.add_argument("--skip-compile", action="store_true", help="skip the compiled ceiling")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak for MFU (H100/H200 SXM)")
    ap.add_argument("--bad-fraction", type=float, default=0.01, help="bad samples in the dirty copy of the shards")
    ap.add_argument("--loader-only", action="store_true", help="only our loader: clean, full decode, dirty")
    ap.add_argument("--repeats", type=int, default=3, help="alternating clean/dirty loader runs (medians compared)")
    ap.add_argument(
        "--progress-only",
        action="store_true",
        help="only our round's step time without and with progress.json written after every step (ABBA, medians)",
    )
    args = ap.parse_args()
    models.register()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    os.environ["TICCLIP_DATA_WORKERS"] = str(args.workers)
    from helpers import make_plan

    from ticclip_trainer.preprocess import Preprocessing
    from ticclip_trainer.train import run_round

    s3_settings = S3Settings.from_env()
    s3 = S3(s3_settings)
    bucket = f"ticclip-bench-{uuid.uuid4().hex[:8]}"
    s3.client.create_bucket(Bucket=bucket)
    res: dict = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            shards = write_shards(os.path.join(tmp, "shards"), args.samples, args.shard_size, args.image_px)
            for s in shards:
                s3.upload(os.path.join(tmp, "shards", s["key"]), f"s3://{bucket}/bench/{s['key']}")
            dirty = write_shards(
                os.path.join(tmp, "dirty"), args.samples, args.shard_size, args.image_px, args.bad_fraction
            )
            for s in dirty:
                s3.upload(os.path.join(tmp, "dirty", s["key"]), f"s3://{bucket}/dirty/{s['key']}")
            jpeg_kib = sum(s["bytes"] for s in shards) / args.samples / 1024
            print(
                f"data: {args.samples} JPEGs of {args.image_px} px (~{jpeg_kib:.1f} KiB per sample in the tar), "
                f"{len(shards)} shards, written in {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
            src = {
                "sliceId": "bench",
                "weight": 1,
                "expectedShare": 1,
                "shards": [{"uri": f"s3://{bucket}/bench/{s['key']}", "samples": s["samples"]} for s in shards],
            }
            plan = make_plan(
                bucket,
                "bench/rounds/0000",
                [src],
                args.samples,
                arch=args.model,
                batch=args.batch,
                warmup=0,
                interval=600,
            )
            steps = args.samples // args.batch
            oc_argv = open_clip_args(
                args.model,
                [os.path.join(tmp, "shards", s["key"]) for s in shards],
                args.samples,
                args.batch,
                args.workers,
                device.type,
                os.path.join(tmp, "oc"),
            )

            if args.progress_only:
                res["progress"] = progress_cost(plan, s3, args.repeats)
                raise _LoaderOnly
            res["loader_ours"] = our_loader(s3_settings, shards, bucket, args.model, args.batch, steps, args.workers)
            print(f"our loader: {res['loader_ours']:.0f} samples/s", flush=True)
            res["loader_ours_full_decode"] = our_loader(
                s3_settings, shards, bucket, args.model, args.batch, steps, args.workers, jpeg_draft=False
            )
            # Clean and dirty alternate in ABBA order, medians compared: a busy machine drifts between
            # runs, and whichever goes second in a pair must not always be the same. A stream reads a
            # whole shuffle window before it yields: with the default 2048 a run of 2048 good samples
            # reads one window clean and two dirty (the 1% more it needs), so these rows use 64.
            clean_runs, dirty_runs, skipped = [], [], {}

            def clean_run():
                clean_runs.append(
                    our_loader(
                        s3_settings, shards, bucket, args.model, args.batch, steps, args.workers, shuffle_window=64
                    )
                )

            def dirty_run():
                skipped.clear()
                dirty_runs.append(
                    our_loader(
                        s3_settings,
                        dirty,
                        bucket,
                        args.model,
                        args.batch,
                        steps,
                        args.workers,
                        folder="dirty",
                        skipped=skipped,
                        shuffle_window=64,
                    )
                )

            for r in range(args.repeats):
                for run in (clean_run, dirty_run) if r % 2 == 0 else (dirty_run, clean_run):
                    run()
            res["loader_ours_clean_median"] = float(np.median(clean_runs))
            res["loader_ours_dirty"] = float(np.median(dirty_runs))
            res["skipped"] = skipped
            res["cost_us"] = per_sample_cost(args.model, args.image_px)
            print(
                f"our loader, clean / {args.bad_fraction:.0%} bad samples, ABBA order: "
                f"{[round(x) for x in clean_runs]} / {[round(x) for x in dirty_runs]} samples/s; skipped {skipped}",
                flush=True,
            )
            if args.loader_only:
                raise _LoaderOnly
            res["loader_open_clip"] = open_clip_pipeline(oc_argv, args.model)
            print(f"open_clip pipeline: {res['loader_open_clip']:.0f} samples/s", flush=True)
            assert run_round(plan) == 0
            summary = json.loads(s3.get_bytes(plan["output"]["uri"] + "train_summary.json"))
            res["round_ours"] = summary["throughput"]["samplesPerSecond"]
            res["data_wait_share"] = summary["throughput"]["dataWaitShareThisProcess"]
            print(f"our round: {res['round_ours']:.0f} samples/s", flush=True)
            res["main_open_clip"] = open_clip_main(oc_argv)
            print(f"open_clip_train.main: {res['main_open_clip']:.0f} samples/s", flush=True)
            logging.getLogger().setLevel(logging.WARNING)  # open_clip's main set INFO for every library
            res["ceiling_eager"] = ceiling(args.model, plan, args.batch, args.ceiling_steps, device, False)
            print(f"ceiling eager: {res['ceiling_eager']:.0f} samples/s", flush=True)
            if not args.skip_compile:
                res["ceiling_compiled"] = ceiling(args.model, plan, args.batch, args.ceiling_steps, device, True)
            model = models.create(args.model).to(device)
            res["gflop_per_sample"] = (
                flops_per_sample(model, Preprocessing.for_model(args.model), min(args.batch, 32), device) / 1e9
            )
    except _LoaderOnly:
        pass
    finally:
        keys = s3.list_keys(f"s3://{bucket}/")
        for i in range(0, len(keys), 1000):
            s3.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
        s3.client.delete_bucket(Bucket=bucket)

    name = (
        torch.cuda.get_device_name()
        if cuda
        else f"CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
    )
    print(
        f"\n{args.model}, batch {args.batch}, {args.samples} samples, {args.workers} loader workers each, {name}, "
        f"torch {torch.__version__}"
    )
    if args.progress_only:
        off, on = res["progress"]
        cost = progress_call_cost()
        print(
            f"Progress.step host cost per training step: {cost['default']:.1f} us (report every 30 s), "
            f"{cost['every_step']:.1f} us (report every step); median step without progress "
            f"{np.median(off) * 1e3:.1f} ms: {cost['default'] * 1e-6 / np.median(off):.2e} of a step"
        )
        print(
            f"step time without / with progress.json after every step (ABBA, {args.repeats} runs each): "
            f"{[round(x * 1e3, 2) for x in off]} / {[round(x * 1e3, 2) for x in on]} ms; "
            f"median ratio {np.median(on) / np.median(off):.3f}x"
        )
        return
    print(
        f"{args.bad_fraction:.0%} bad samples vs clean (medians of {args.repeats} runs each, ABBA order): "
        f"{res['loader_ours_dirty'] / res['loader_ours_clean_median']:.3f}x good samples/s; "
        f"skipped by reason (one run) {res['skipped']}"
    )
    print("loader cost per sample (us, in-process): " + ", ".join(f"{k} {v:.0f}" for k, v in res["cost_us"].items()))
    if args.loader_only:
        for label, k in (
            ("our loader alone", "loader_ours"),
            ("our loader alone, full-size JPEG decode", "loader_ours_full_decode"),
            ("our loader alone, clean (median)", "loader_ours_clean_median"),
            (f"our loader alone, {args.bad_fraction:.0%} bad samples (median)", "loader_ours_dirty"),
        ):
            print(f"| {label:<48} | {res[k]:>10.1f} |")
        return
    print(f"FLOPs per training sample (FlopCounterMode, forward + backward): {res['gflop_per_sample']:.3f} GFLOP")
    rows = [
        ("our loader alone", "loader_ours"),
        ("our loader alone, full-size JPEG decode", "loader_ours_full_decode"),
        ("our loader alone, clean (median of the alternating runs)", "loader_ours_clean_median"),
        (f"our loader alone, {args.bad_fraction:.0%} bad samples (median)", "loader_ours_dirty"),
        ("open_clip webdataset pipeline alone", "loader_open_clip"),
        ("our round (run_round loop)", "round_ours"),
        ("open_clip_train.main (train_one_epoch)", "main_open_clip"),
        ("ceiling: synthetic tensors, eager", "ceiling_eager"),
        ("ceiling: synthetic tensors, compiled", "ceiling_compiled"),
    ]
    print(f"| {'what':<40} | {'samples/s':>10} |" + (" MFU |" if cuda else ""))
    print(f"|{'-' * 42}|{'-' * 12}|" + ("-----|" if cuda else ""))
    for label, k in rows:
        if k in res:
            mfu = f" {res[k] * res['gflop_per_sample'] * 1e9 / (args.peak_tflops * 1e12):.1%} |" if cuda else ""
            print(f"| {label:<40} | {res[k]:>10.1f} |{mfu}")
    print(
        f"ours/open_clip: loader {res['loader_ours'] / res['loader_open_clip']:.2f}x "
        f"({res['loader_ours_full_decode'] / res['loader_open_clip']:.2f}x with full-size JPEG decode), "
        f"round {res['round_ours'] / res['main_open_clip']:.2f}x"
    )
    ceil = f"{res['round_ours'] / res['ceiling_eager']:.2f}x eager"
    if "ceiling_compiled" in res:
        ceil += f", {res['round_ours'] / res['ceiling_compiled']:.2f}x compiled"
    print(f"ours/ceiling: {ceil}; our data-wait share {res['data_wait_share']:.1%} of the training loop")


if __name__ == "__main__":
    random.seed(0)
    main()
