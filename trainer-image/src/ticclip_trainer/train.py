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

from . import export, models
from .data import BatchLoader, MixedStream, StreamState, shards_from_plan
from .errors import PermanentError, Preempted
from .preprocess import Preprocessing
from .s3io import S3, S3Settings

log = logging.getLogger("ticclip_trainer")

# ---- config: defaults not carried by the plan (env overrides, recorded in train_summary.json) ----
LOSS_CURVE_POINTS = 200  # at most this many loss samples (loss.item() syncs the GPU: only then)
GRAD_CHECKPOINTING = os.environ.get("TICCLIP_GRAD_CHECKPOINTING", "0") == "1"
GRAD_CLIP_NORM = float(os.environ.get("TICCLIP_GRAD_CLIP_NORM", "0"))  # 0 = off, as open_clip's default
PARITY_MIN_COSINE = 0.999


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @staticmethod
    def from_env() -> "Dist":
        return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                    int(os.environ.get("WORLD_SIZE", 1)))

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
    """Per-step, per-rank batch sizes adding up to exactly `budget`: full global steps of
    batch x world_size, then the remainder; every rank gets at least one sample per step."""
    if budget < world_size:
        raise PermanentError(f"budget {budget} is smaller than the world size {world_size}", "data.samples")
    full, rest = divmod(budget, batch * world_size)
    glob = [batch * world_size] * full + ([rest] if rest else [])
    if len(glob) > 1 and glob[-1] < world_size:
        glob[-2] -= world_size - glob[-1]
        glob[-1] = world_size
    return [[g // world_size + (1 if r < g % world_size else 0) for r in range(world_size)] for g in glob]


def make_optimizer(model, plan: dict):
    """open_clip_train.main's AdamW recipe."""
    defaults = get_default_params(plan["model"]["architecture"])
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": plan["optimizer"]["weightDecay"]}],
        lr=plan["optimizer"]["lr"], betas=(defaults["beta1"], defaults["beta2"]), eps=defaults["eps"])


def load_weights(model, path: str, uri: str) -> None:
    """Weights-only warm start (open_clip `--pretrained <file>` semantics), strict."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PermanentError(f"{uri} is not a readable checkpoint: {e}", "model.initCheckpoint") from e
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise PermanentError(f"{uri} holds no state_dict", "model.initCheckpoint")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        msg = str(e).splitlines()
        raise PermanentError(f"{uri} does not fit architecture: {' '.join(msg[:3])[:600]}",
                             "model.initCheckpoint") from e


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
        log.warning("SIGTERM: checkpointing and exiting at the end of this step")
        self.hit = True

    def __exit__(self, *exc):
        if self._prev is not None:
            signal.signal(signal.SIGTERM, self._prev)


def run_round(plan: dict) -> int:
    t_start = time.time()
    dist = Dist.from_env()
    s3 = S3(S3Settings.from_plan(plan))
    out = plan["output"]["uri"]
    if s3.exists(out + "_SUCCESS"):
        log.info("%s_SUCCESS exists: round already done, nothing to do", out)
        return 0

    if dist.enabled:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    device = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = plan["optimizer"]["precision"] if device.type == "cuda" else "fp32"
    autocast = {"amp_bf16": lambda: torch.autocast("cuda", dtype=torch.bfloat16),
                "amp": lambda: torch.autocast("cuda", dtype=torch.float16)}.get(precision, nullcontext)
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None

    arch = plan["model"]["architecture"]
    torch.manual_seed(plan["seed"])
    model = models.create(arch)
    prep = Preprocessing.for_model(arch)
    slice_ids, shards, weights = shards_from_plan(plan)
    stream = MixedStream(s3, shards, weights, plan["seed"], dist.rank)
    stream.check_shards_exist()

    fingerprint = plan_fingerprint(plan, dist.world_size)
    partial_uri = out + "partial/latest.pt"
    resume = None
    with tempfile.TemporaryDirectory() as tmp:
        if s3.exists(partial_uri):
            s3.download(partial_uri, os.path.join(tmp, "partial.pt"))
            resume = torch.load(os.path.join(tmp, "partial.pt"), map_location="cpu", weights_only=False)
            if resume.get("fingerprint") != fingerprint:
                log.warning("%s is from a different plan: ignoring it and starting the round afresh", partial_uri)
                resume = None
        if resume is not None:
            model.load_state_dict(resume["model"])
            log.info("resuming from %s at step %d, %d samples seen", partial_uri, resume["step"], resume["samples_seen"])
        elif plan["model"]["initCheckpoint"]:
            uri = plan["model"]["initCheckpoint"]
            s3.download(uri, os.path.join(tmp, "init.pt"), field="model.initCheckpoint")
            load_weights(model, os.path.join(tmp, "init.pt"), uri)
            log.info("warm start from %s (weights only)", uri)
    init_digest = resume["init_digest"] if resume else weights_digest(model)
    model.to(device)
    if GRAD_CHECKPOINTING:
        model.set_grad_checkpointing(True)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if dist.enabled else model

    per_step = step_sizes(plan["data"]["samples"], plan["optimizer"]["batchSize"], dist.world_size)
    sizes = [s[dist.rank] for s in per_step]
    total_steps = len(sizes)
    optimizer = make_optimizer(model, plan)
    scheduler = cosine_lr(optimizer, plan["optimizer"]["lr"], plan["optimizer"]["warmupSteps"], total_steps)
    loss_fn = ClipLoss(local_loss=dist.enabled, gather_with_grad=dist.enabled, cache_labels=True,
                       rank=dist.rank, world_size=dist.world_size)
    local_loss_fn = ClipLoss()  # for a last step whose batch sizes differ across ranks

    step, samples_seen, per_source = 0, 0, [0] * len(slice_ids)
    loss_curve, resumes, train_time = [], [], 0.0
    state = StreamState()
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        step, samples_seen, per_source = resume["step"], resume["samples_seen"], resume["per_source"]
        loss_curve, resumes, train_time = resume["loss_curve"], resume["resumes"], resume["train_time_s"]
        state = StreamState(**resume["stream_states"][dist.rank])
        torch.set_rng_state(resume["torch_rng"])
        resumes.append({"step": step, "samplesSeen": samples_seen, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    log_every = max(1, total_steps // LOSS_CURVE_POINTS)
    interval_s = plan["checkpointIntervalMinutes"] * 60
    last_ckpt = time.monotonic()
    data_time = 0.0

    def save_partial():
        states = [state.to_json()]
        if dist.enabled:
            states = [None] * dist.world_size
            torch.distributed.all_gather_object(states, state.to_json())
        if not dist.is_main:
            return
        ckpt = {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler else None, "step": step, "samples_seen": samples_seen,
                "per_source": per_source, "stream_states": states, "loss_curve": loss_curve, "resumes": resumes,
                "train_time_s": train_time, "init_digest": init_digest, "torch_rng": torch.get_rng_state()}
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(ckpt, os.path.join(tmp, "latest.pt"))
            s3.upload(os.path.join(tmp, "latest.pt"), partial_uri)
        log.info("intra-round checkpoint at step %d (%d samples) -> %s", step, samples_seen, partial_uri)

    log.info("round %d: %s, %d samples in %d steps of <=%d on %s (%s), world size %d", plan["round"], arch,
             plan["data"]["samples"], total_steps, plan["optimizer"]["batchSize"], device, precision, dist.world_size)
    ddp.train()
    with _SigTerm() as sigterm:
        t_seg = time.perf_counter()
        t_data = time.perf_counter()
        for batch in BatchLoader(stream, prep, state, sizes[step:]):
            data_time += time.perf_counter() - t_data
            scheduler(step)
            images = torch.from_numpy(batch.images).to(device, non_blocking=True)
            tokens = torch.from_numpy(batch.tokens).to(device, non_blocking=True)
            n = images.shape[0]
            uneven = len(set(per_step[step])) > 1  # all_gather needs equal sizes: local loss this step
            with autocast():
                img_f, txt_f, scale = ddp(images, tokens)[:3]
                loss = (local_loss_fn if uneven else loss_fn)(img_f, txt_f, scale)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if GRAD_CLIP_NORM:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if GRAD_CLIP_NORM:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
                optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            counts = torch.tensor([batch.sources.count(i) for i in range(len(slice_ids))], dtype=torch.long)
            if dist.enabled:
                counts = counts.to(device)
                torch.distributed.all_reduce(counts)
            per_source = [a + int(b) for a, b in zip(per_source, counts.tolist())]
            samples_seen += int(counts.sum())
            state = batch.state
            if step % log_every == 0 or step == total_steps or step == 1:
                lv = float(loss.item())
                loss_curve.append({"step": step, "samplesSeen": samples_seen, "loss": lv,
                                   "lr": optimizer.param_groups[0]["lr"]})
                log.info("step %d/%d loss %.4f lr %.2e samples %d", step, total_steps, lv,
                         optimizer.param_groups[0]["lr"], samples_seen)
            want = torch.tensor([int(sigterm.hit), int(time.monotonic() - last_ckpt >= interval_s)])
            if dist.enabled:
                want = want.to(device)
                torch.distributed.all_reduce(want, op=torch.distributed.ReduceOp.MAX)
            if (want[0] or want[1]) and step < total_steps:
                train_time += time.perf_counter() - t_seg
                t_seg = time.perf_counter()
                save_partial()
                last_ckpt = time.monotonic()
                if want[0]:
                    raise Preempted(f"preempted (SIGTERM) at step {step}/{total_steps}; checkpoint saved")
            t_data = time.perf_counter()
        train_time += time.perf_counter() - t_seg

    if samples_seen != plan["data"]["samples"]:
        raise RuntimeError(f"saw {samples_seen} samples, budget {plan['data']['samples']}")
    if dist.enabled:
        torch.distributed.barrier()
    if dist.is_main:
        write_outputs(plan, s3, model, prep, slice_ids, dict(
            per_source=per_source, step=step, samples_seen=samples_seen, loss_curve=loss_curve, resumes=resumes,
            train_time=train_time, data_time=data_time, wall=time.time() - t_start, init_digest=init_digest,
            device=str(device), precision=precision, dist=dist))
    if dist.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def write_outputs(plan, s3: S3, model, prep: Preprocessing, slice_ids, r: dict) -> None:
    out = plan["output"]["uri"]
    model = model.to("cpu").eval()
    with tempfile.TemporaryDirectory() as tmp:
        sd = model.state_dict()
        torch.save({"epoch": 1, "name": f"{plan['run']['name']}-r{plan['round']:04d}", "state_dict": sd},
                   os.path.join(tmp, "checkpoint.pt"))
        info = export.export_onnx(model, prep, tmp)
        parity = export.parity(model, prep, tmp)
        if parity["minCosine"] < PARITY_MIN_COSINE:
            raise PermanentError(f"ONNX export does not match PyTorch (min cosine {parity['minCosine']:.5f})",
                                 "model.architecture")
        model_json = {"architecture": plan["model"]["architecture"], **prep.to_json(), **info}
        tt = max(r["train_time"], 1e-9)
        steps_this_process = r["step"] - (r["resumes"][-1]["step"] if r["resumes"] else 0)
        summary = {
            "run": plan["run"], "round": plan["round"], "architecture": plan["model"]["architecture"],
            "initCheckpoint": plan["model"]["initCheckpoint"],
            "samplesBudget": plan["data"]["samples"], "samplesSeen": r["samples_seen"],
            "samplesPerSource": dict(zip(slice_ids, r["per_source"])),
            "expectedShare": {s["sliceId"]: s["expectedShare"] for s in plan["data"]["sources"]},
            "steps": r["step"], "batchSize": plan["optimizer"]["batchSize"], "worldSize": r["dist"].world_size,
            "device": r["device"], "precision": {"requested": plan["optimizer"]["precision"], "effective": r["precision"]},
            "wallTimeSeconds": r["wall"], "trainTimeSeconds": r["train_time"],
            "throughput": {"samplesPerSecond": r["samples_seen"] / tt,
                           "samplesPerSecondPerProcess": r["samples_seen"] / tt / r["dist"].world_size,
                           "dataWaitSecondsThisProcess": r["data_time"], "stepsThisProcess": steps_this_process},
            "lossCurve": r["loss_curve"], "resumes": r["resumes"],
            "initWeightsDigest": r["init_digest"], "finalWeightsDigest": weights_digest(sd),
            "onnxParity": parity,
            "config": {"gradCheckpointing": GRAD_CHECKPOINTING, "gradClipNorm": GRAD_CLIP_NORM,
                       "lossCurvePoints": LOSS_CURVE_POINTS, "optimizer": plan["optimizer"],
                       "adam": get_default_params(plan["model"]["architecture"]), "scheduler": "cosine",
                       "seed": plan["seed"], "checkpointIntervalMinutes": plan["checkpointIntervalMinutes"]},
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
