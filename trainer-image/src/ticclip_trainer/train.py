"""One training round: our own loop on open_clip's model, loss, optimizer recipe and scheduler.

Why not `open_clip_train.main`: see adr/0002-trainer-loop.md. In short, the round needs an exact
sample budget across a weighted S3 mixture, intra-round checkpoints with the data position (open_clip
checkpoints at epoch ends only), SIGTERM handling, a weights-only warm start from S3, and exit codes
that separate bad input from transient failure. The optimizer details reproduce open_clip's:
AdamW with no weight decay on gains/biases/logit_scale, betas (0.9, 0.98) and eps 1e-6 for ViTs
(open_clip_train.params.get_default_params), open_clip's own cosine_lr with linear warmup, the
logit_scale clamped to ln(100) after each step, ClipLoss with local loss + gather-with-grad when
distributed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from open_clip import ClipLoss
from open_clip_train.params import get_default_params
from open_clip_train.scheduler import cosine_lr

from . import checkpoints, export, models
from .data import (
    DEFAULT_MAX_SKIPPED_FRACTION,
    RoundBatches,
    SkipBound,
    SkipStats,
    StreamConfig,
    StreamState,
    make_loader,
    shards_from_plan,
    skip_limit,
)
from .errors import PermanentError, Preempted
from .preprocess import Preprocessing
from .progress import Progress
from .s3io import S3, S3Settings
from .settings import Settings

log = logging.getLogger("ticclip_trainer")

PARITY_MIN_COSINE = 0.999


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @staticmethod
    def from_env() -> Dist:
        return Dist(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        )

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def weights_digest(model_or_sd) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): compares weights across processes."""
    sd = model_or_sd.state_dict() if hasattr(model_or_sd, "state_dict") else model_or_sd
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def plan_fingerprint(plan: dict, world_size: int) -> str:
    """What must match for an intra-round checkpoint to be resumable."""
    keep = {k: plan[k] for k in ("run", "round", "model", "data", "optimizer", "seed")}
    return hashlib.sha256(json.dumps([keep, world_size], sort_keys=True).encode()).hexdigest()


def step_sizes(budget: int, batch: int, world_size: int) -> list[list[int]]:
    """Per-step, per-rank batch sizes adding up to exactly `budget`. `batch` is the GLOBAL batch
    (optimizer.batchSize), split over the ranks: full steps of `batch`, then the remainder; every
    rank gets at least one sample per step (ranks differ by at most one where it does not divide)."""
    if budget < world_size:
        raise PermanentError(f"budget {budget} is smaller than the world size {world_size}", "data.samples")
    if batch < world_size:
        raise PermanentError(f"global batch {batch} is smaller than the world size {world_size}", "optimizer.batchSize")
    full, rest = divmod(budget, batch)
    glob = [batch] * full
    if rest and (rest >= world_size or not glob):
        glob.append(rest)
    elif rest:  # too few for a step of its own: the last step takes them (ranks +1 at most)
        glob[-1] += rest
    return [[g // world_size + (1 if r < g % world_size else 0) for r in range(world_size)] for g in glob]


def make_optimizer(model, plan: dict, fused: bool = False):
    """open_clip_train.main's AdamW recipe (fused kernel on CUDA: one launch for all parameters)."""
    defaults = get_default_params(plan["model"]["architecture"])
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": plan["optimizer"]["weightDecay"]},
        ],
        lr=plan["optimizer"]["lr"],
        betas=(defaults["beta1"], defaults["beta2"]),
        eps=defaults["eps"],
        **({"fused": True} if fused else {}),
    )


class _SigTerm:
    def __init__(self):
        self.hit = False
        self._prev = None

    def __enter__(self):
        try:
            self._prev = signal.signal(signal.SIGTERM, self._on)
        except ValueError:  # not the main thread
            self._prev = None
        return self

    def _on(self, *_):
        log.warning("SIGTERM: checkpointing and exiting at the next control step")
        self.hit = True

    def __exit__(self, *exc):
        if self._prev is not None:
            signal.signal(signal.SIGTERM, self._prev)


class _Control:
    """When to checkpoint or stop, agreed by all ranks without a blocking collective per step: every
    `every` steps each rank posts (SIGTERM seen, checkpoint due) in an async all_reduce(MAX) on a gloo
    group and acts on the previous post, which has long arrived. One process decides at once."""

    def __init__(self, dist: Dist, every: int):
        self.dist, self.every = dist, every
        self.group = torch.distributed.new_group(backend="gloo") if dist.enabled else None
        self.pending = None

    def poll(self, step: int, sigterm: bool, due: bool) -> tuple[bool, bool]:
        if self.group is None:
            return sigterm, due
        if step % self.every:
            return False, False
        decided = (False, False)
        if self.pending is not None:
            work, t = self.pending
            work.wait()
            decided = (bool(t[0]), bool(t[1]))
        t = torch.tensor([int(sigterm), int(due)], dtype=torch.int32)
        self.pending = (
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.group, async_op=True),
            t,
        )
        return decided

    def close(self) -> None:
        if self.pending is not None:
            self.pending[0].wait()
            self.pending = None


def _setup_device(dist: Dist):
    if dist.enabled:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    device = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def run_round(plan: dict, settings: Settings | None = None) -> int:
    t_start = time.time()
    dist = Dist.from_env()
    s3_settings = S3Settings.from_plan(plan)
    s3 = S3(s3_settings)
    out = plan["output"]["uri"]
    if s3.exists(out + "_SUCCESS"):
        log.info("%s_SUCCESS exists: round already done, nothing to do", out)
        return 0

    device = _setup_device(dist)
    cuda = device.type == "cuda"
    settings = settings or Settings.from_env(cuda=cuda, local_world_size=dist.local_world_size)
    precision = plan["optimizer"]["precision"] if cuda else "fp32"
    autocast = {
        "amp_bf16": lambda: torch.autocast("cuda", dtype=torch.bfloat16),
        "amp": lambda: torch.autocast("cuda", dtype=torch.float16),
    }.get(precision, nullcontext)
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None
    put = (
        (lambda uri, body: s3.put_bytes(uri, body, "application/json")) if dist.is_main and settings.progress else None
    )
    progress = Progress(put, out + "progress.json", plan["data"]["samples"], 0, settings.progress_seconds)
    progress.phase("loading")

    arch = plan["model"]["architecture"]
    torch.manual_seed(plan["seed"])
    model = models.create(arch)
    prep = Preprocessing.for_model(arch)
    slice_ids, shards, weights = shards_from_plan(plan)
    for sh in shards:
        if not s3.exists(sh.uri):
            raise PermanentError(f"shard {sh.uri} does not exist", sh.field)
    per_step = step_sizes(plan["data"]["samples"], plan["optimizer"]["batchSize"], dist.world_size)
    sizes = [s[dist.rank] for s in per_step]
    total_steps = progress.steps_total = len(sizes)

    fingerprint = plan_fingerprint(plan, dist.world_size)
    partial_uri = out + "partial/latest.pt"
    resume = None
    with tempfile.TemporaryDirectory() as tmp:
        if s3.exists(partial_uri):
            s3.download(partial_uri, os.path.join(tmp, "partial.pt"))
            resume = torch.load(os.path.join(tmp, "partial.pt"), map_location="cpu", weights_only=False)
            if resume.get("fingerprint") != fingerprint or "streamConfig" not in resume:
                log.warning("%s is from a different plan: ignoring it and starting the round afresh", partial_uri)
                resume = None
        if resume is not None:
            model.load_state_dict(resume["model"])
            log.info(
                "resuming from %s at step %d, %d samples seen", partial_uri, resume["step"], resume["samples_seen"]
            )
        elif plan["model"]["initCheckpoint"]:
            uri = plan["model"]["initCheckpoint"]
            ck = checkpoints.fetch(s3, uri, tmp)
            checkpoints.load_initial(model, arch, ck)
            log.info("warm start from %s (%s)", ck.uri, "TorchScript" if ck.torchscript else "weights only")
    init_digest = resume["init_digest"] if resume else weights_digest(model)
    model.to(device)
    if settings.grad_checkpointing:
        model.set_grad_checkpointing(True)
    ddp = (
        torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if cuda else None)
        if dist.enabled
        else model
    )
    # The last step may be smaller (exact budget): it runs eagerly instead of recompiling for its shape.
    step_fn = torch.compile(ddp) if settings.compile else ddp

    optimizer = make_optimizer(model, plan, fused=settings.fused_adamw)
    scheduler = cosine_lr(optimizer, plan["optimizer"]["lr"], plan["optimizer"]["warmupSteps"], total_steps)
    loss_fn = ClipLoss(
        local_loss=dist.enabled,
        gather_with_grad=dist.enabled,
        cache_labels=True,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    local_loss_fn = ClipLoss()  # for a last step whose batch sizes differ across ranks

    # Stream definition: from the checkpoint on resume (exact continuation), else from the settings.
    cfg = (
        StreamConfig.from_json(resume["streamConfig"])
        if resume
        else StreamConfig(max(1, settings.data_workers), settings.open_shards, settings.shuffle_window)
    )
    workers = cfg.streams if settings.data_workers > 0 else 0
    step, samples_seen = 0, 0
    per_source = [0] * len(slice_ids)  # this rank's
    loss_curve, resumes, train_time = [], [], 0.0
    states = [StreamState.initial(cfg.open_shards)] * cfg.streams
    max_skipped = plan["data"].get("maxSkippedFraction", DEFAULT_MAX_SKIPPED_FRACTION)
    bound = SkipBound(max_skipped, sum(sizes))  # this rank's share: the ranks' bounds add up to the round's
    skipped = SkipStats()  # this rank's
    digest = hashlib.sha256(f"rank {dist.rank}".encode()).hexdigest()  # chain over the batches' sample ids
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        step, samples_seen = resume["step"], resume["samples_seen"]
        loss_curve, resumes, train_time = resume["loss_curve"], resume["resumes"], resume["train_time_s"]
        mine = resume["ranks"][dist.rank]
        states = [StreamState.from_json(d) for d in mine["streams"]]
        per_source, digest = mine["per_source"], mine["digest"]
        skipped = SkipStats.from_state(mine.get("skipped"))
        torch.set_rng_state(resume["torch_rng"])
        progress.resumed(step, samples_seen, resume.get("progress_history"))
        resumes.append(
            {"step": step, "samplesSeen": samples_seen, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )

    train_time_before = train_time
    log_every = max(1, total_steps // settings.loss_curve_points)
    interval_s = plan["checkpointIntervalMinutes"] * 60
    last_ckpt = time.monotonic()
    data_time, decode_time = 0.0, 0.0
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1) * 255
    inv_std = 1 / (torch.tensor(prep.std, device=device).view(1, 3, 1, 1) * 255)

    def save_partial():
        progress.phase("checkpointing")
        mine = {
            "streams": [s.to_json() for s in states],
            "per_source": per_source,
            "digest": digest,
            "skipped": skipped.to_state(),
        }
        ranks = [mine]
        if dist.enabled:
            ranks = [None] * dist.world_size
            torch.distributed.all_gather_object(ranks, mine)
        if dist.is_main:
            ckpt = {
                "fingerprint": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler else None,
                "step": step,
                "samples_seen": samples_seen,
                "ranks": ranks,
                "streamConfig": cfg.to_json(),
                "loss_curve": loss_curve,
                "resumes": resumes,
                "train_time_s": train_time,
                "init_digest": init_digest,
                "torch_rng": torch.get_rng_state(),
                "progress_history": progress.history,
            }
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(ckpt, os.path.join(tmp, "latest.pt"))
                s3.upload(os.path.join(tmp, "latest.pt"), partial_uri)
            log.info("intra-round checkpoint at step %d (%d samples) -> %s", step, samples_seen, partial_uri)
        if dist.enabled:  # no rank exits (preemption) before the checkpoint is stored
            torch.distributed.barrier()

    log.info(
        "round %d: %s, %d samples in %d steps of global batch %d on %s (%s), world size %d, "
        "%d loader workers, %d streams x %d open shards",
        plan["round"],
        arch,
        plan["data"]["samples"],
        total_steps,
        plan["optimizer"]["batchSize"],
        device,
        precision,
        dist.world_size,
        workers,
        cfg.streams,
        cfg.open_shards,
    )
    ddp.train()
    control = _Control(dist, settings.control_every)
    with _SigTerm() as sigterm:
        progress.phase("training")
        t_seg = time.perf_counter()
        if step < total_steps:
            batches = RoundBatches(
                s3_settings,
                shards,
                weights,
                len(slice_ids),
                prep,
                plan["seed"],
                dist.rank,
                sizes,
                step,
                states,
                cfg,
                settings.prefetch_shards,
                settings.stream_retries,
                bound,
                skipped.to_state(),
            )
            loader = iter(make_loader(batches, workers, pin_memory=cuda))
            while step < total_steps:
                t_data = time.perf_counter()
                batch = next(loader)
                wait = time.perf_counter() - t_data
                data_time += wait
                if "error" in batch:
                    raise batch["error"]
                if batch["step"] != step:
                    raise RuntimeError(f"loader returned step {batch['step']}, expected {step}")
                scheduler(step)
                # uint8 NHWC over the bus (4x fewer bytes than float), NCHW-contiguous before the float
                # conversion so the model sees the layout it sees from open_clip's loader.
                images = batch["images"].to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()
                images = (images.float() - mean) * inv_std
                tokens = batch["tokens"].to(device, non_blocking=True)
                uneven = len(set(per_step[step])) > 1  # all_gather needs equal sizes: local loss this step
                fwd = ddp if (uneven or per_step[step] != per_step[0]) else step_fn
                with autocast():
                    img_f, txt_f, scale = fwd(images, tokens)[:3]
                    loss = (local_loss_fn if uneven else loss_fn)(img_f, txt_f, scale)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if settings.grad_clip_norm:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip_norm)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if settings.grad_clip_norm:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip_norm)
                    optimizer.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                # Host-side bookkeeping only: nothing here waits for the device.
                samples_seen += sum(per_step[step])
                per_source = [a + b for a, b in zip(per_source, batch["counts"], strict=True)]
                states[batch["stream"]] = StreamState.from_json(batch["state"])
                digest = hashlib.sha256((digest + batch["digest"]).encode()).hexdigest()
                skipped.merge(SkipStats.from_state(batch["skipped"]))
                if skipped.total > bound.limit:
                    raise skipped.too_many(shards, bound.limit, bound.fraction, bound.budget)
                decode_time += batch["decodeSeconds"]
                step += 1
                progress.step(sum(per_step[step - 1]), wait, loss, optimizer.param_groups[0]["lr"], skipped)
                if step % log_every == 0 or step == total_steps or step == 1:
                    lv = float(loss.item())
                    loss_curve.append(
                        {"step": step, "samplesSeen": samples_seen, "loss": lv, "lr": optimizer.param_groups[0]["lr"]}
                    )
                    log.info(
                        "step %d/%d loss %.4f lr %.2e samples %d data wait %.1f%%",
                        step,
                        total_steps,
                        lv,
                        optimizer.param_groups[0]["lr"],
                        samples_seen,
                        100 * data_time / max(1e-9, time.perf_counter() - t_seg),
                    )
                stop, due = control.poll(step, sigterm.hit, time.monotonic() - last_ckpt >= interval_s)
                if (stop or due) and step < total_steps:
                    train_time += time.perf_counter() - t_seg
                    t_seg = time.perf_counter()
                    save_partial()
                    last_ckpt = time.monotonic()
                    if stop:
                        raise Preempted(f"preempted (SIGTERM) at step {step}/{total_steps}; checkpoint saved")
                    progress.phase("training")
            del loader
            train_time += time.perf_counter() - t_seg
            # After the last step, before export: a failed export or upload does not retrain the round.
            save_partial()
        control.close()

    if dist.enabled:
        totals = torch.tensor(per_source, dtype=torch.long)
        torch.distributed.all_reduce(totals, group=control.group)
        all_digests = [None] * dist.world_size
        torch.distributed.all_gather_object(all_digests, digest)
        per_source_all = totals.tolist()
        all_skipped = [None] * dist.world_size
        torch.distributed.all_gather_object(all_skipped, skipped.to_state())
        skipped_all = SkipStats()
        for st in all_skipped:
            skipped_all.merge(SkipStats.from_state(st))
    else:
        per_source_all, all_digests, skipped_all = per_source, [digest], skipped
    if samples_seen != plan["data"]["samples"] or sum(per_source_all) != samples_seen:
        raise RuntimeError(
            f"saw {samples_seen} samples ({sum(per_source_all)} by source), budget {plan['data']['samples']}"
        )
    if dist.is_main:
        progress.phase("exporting")
        write_outputs(
            plan,
            s3,
            model,
            prep,
            slice_ids,
            dict(
                per_source=per_source_all,
                step=step,
                samples_seen=samples_seen,
                loss_curve=loss_curve,
                resumes=resumes,
                train_time=train_time,
                process_train_time=train_time - train_time_before,
                data_time=data_time,
                decode_time=decode_time,
                wall=time.time() - t_start,
                init_digest=init_digest,
                device=str(device),
                precision=precision,
                dist=dist,
                settings=settings,
                streams=cfg,
                workers=workers,
                data_digests=all_digests,
                skipped=skipped_all.summary(shards, max_skipped, skip_limit(max_skipped, plan["data"]["samples"])),
                progress_history=progress.history,
            ),
        )
    if dist.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def write_outputs(plan, s3: S3, model, prep: Preprocessing, slice_ids, r: dict) -> None:
    out = plan["output"]["uri"]
    model = model.to("cpu").eval()
    with tempfile.TemporaryDirectory() as tmp:
        sd = model.state_dict()
        torch.save(
            {"epoch": 1, "name": f"{plan['run']['name']}-r{plan['round']:04d}", "state_dict": sd},
            os.path.join(tmp, "checkpoint.pt"),
        )
        info = export.export_onnx(model, prep, tmp)
        parity = export.parity(model, prep, tmp)
        if parity["minCosine"] < PARITY_MIN_COSINE:
            raise PermanentError(
                f"ONNX export does not match PyTorch (min cosine {parity['minCosine']:.5f})", "model.architecture"
            )
        model_json = {"architecture": plan["model"]["architecture"], **prep.to_json(), **info}
        tt = max(r["train_time"], 1e-9)
        steps_this_process = r["step"] - (r["resumes"][-1]["step"] if r["resumes"] else 0)
        summary = {
            "run": plan["run"],
            "round": plan["round"],
            "architecture": plan["model"]["architecture"],
            "initCheckpoint": plan["model"]["initCheckpoint"],
            "samplesBudget": plan["data"]["samples"],
            "samplesSeen": r["samples_seen"],
            "samplesPerSource": dict(zip(slice_ids, r["per_source"], strict=True)),
            "expectedShare": {s["sliceId"]: s["expectedShare"] for s in plan["data"]["sources"]},
            "steps": r["step"],
            "batchSize": plan["optimizer"]["batchSize"],
            "worldSize": r["dist"].world_size,
            "device": r["device"],
            "precision": {"requested": plan["optimizer"]["precision"], "effective": r["precision"]},
            "wallTimeSeconds": r["wall"],
            "trainTimeSeconds": r["train_time"],
            "throughput": {
                "samplesPerSecond": r["samples_seen"] / tt,
                "samplesPerSecondPerProcess": r["samples_seen"] / tt / r["dist"].world_size,
                "dataWaitSecondsThisProcess": r["data_time"],
                "dataWaitShareThisProcess": r["data_time"] / max(1e-9, r["process_train_time"]),
                "decodeSecondsInWorkers": r["decode_time"],
                "stepsThisProcess": steps_this_process,
            },
            "lossCurve": r["loss_curve"],
            "progressHistory": r["progress_history"],
            "resumes": r["resumes"],
            "initWeightsDigest": r["init_digest"],
            "finalWeightsDigest": weights_digest(sd),
            "dataDigests": r["data_digests"],
            "skippedSamples": r["skipped"],
            "onnxParity": parity,
            "config": {
                **r["settings"].to_json(),
                "loaderWorkers": r["workers"],
                "streams": r["streams"].to_json(),
                "optimizer": plan["optimizer"],
                "perRankBatch": plan["optimizer"]["batchSize"] // r["dist"].world_size,
                "adam": get_default_params(plan["model"]["architecture"]),
                "scheduler": "cosine",
                "seed": plan["seed"],
                "checkpointIntervalMinutes": plan["checkpointIntervalMinutes"],
            },
        }
        for name in ("checkpoint.pt", "image_encoder.onnx", "text_encoder.onnx"):
            s3.upload(os.path.join(tmp, name), out + name)
    s3.put_bytes(out + "model.json", json.dumps(model_json, indent=2).encode(), "application/json")
    s3.put_bytes(out + "train_summary.json", json.dumps(summary, indent=2).encode(), "application/json")
    s3.put_bytes(out + "_SUCCESS", b"", "text/plain")
    try:
        s3.delete(out + "partial/latest.pt")
    except Exception as e:  # the round is done; a leftover partial is harmless
        log.warning("could not delete the intra-round checkpoint: %s", e)
    log.info("round done: %s_SUCCESS", out)
