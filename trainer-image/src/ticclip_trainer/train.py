"""One training round: our own loop on open_clip's model, loss, optimizer recipe and scheduler.

Why not `open_clip_train.main`: see adr/0002-trainer-loop.md. In short, the round needs an exact
sample budget across a weighted S3 mixture, intra-round checkpoints with the data position (open_clip
checkpoints at epoch ends only), SIGTERM handling, a weights-only warm start from S3, and exit codes
that separate bad input from transient failure. The optimizer details reproduce open_clip's:
AdamW with no weight decay on gains/biases/logit_scale, betas (0.9, 0.98) and eps 1e-6 for ViTs
(open_clip_train.params.get_default_params), open_clip's own cosine_lr with linear warmup, the
logit_scale clamped to ln(100) after each step, ClipLoss with local loss + gather-with-grad when
distributed.

`run_round` reads top to bottom: `RoundSetup` (what the process is given), `resume_or_warm_start`
(a `RoundState`, the round's state and its intra-round checkpoint round trip), `train_steps` (each a
`TrainStep`), `export_model`, then `publish` with the typed `TrainSummary` (summary.py).
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
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property

import torch
from open_clip import ClipLoss
from open_clip_train.params import get_default_params
from open_clip_train.scheduler import const_lr_cooldown, cosine_lr

from . import checkpoints, export, models
from .data import (
    DEFAULT_MAX_SKIPPED_FRACTION,
    RoundBatches,
    Shard,
    SkipBound,
    SkipStats,
    StreamConfig,
    StreamState,
    make_loader,
    shards_from_plan,
    skip_limit,
)
from .errors import PermanentError, Preempted
from .merge import UNMERGED_DIR, MergeSetting, merge_into, raw_beside, round_dir_of
from .preprocess import Preprocessing
from .progress import Progress, utc_now
from .s3io import S3, S3Settings
from .settings import Settings
from .summary import Precision, Throughput, TrainSummary

log = logging.getLogger("ticclip_trainer")

PARITY_MIN_COSINE = 0.999
DEFAULT_ANNEAL_FRACTION = 0.2  # round-plan.ts optimizer.annealFraction
OPTIMIZER_STATE = "optimizer.pt"  # beside checkpoint.pt, under optimizer.state Carry


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


def lr_schedule(optimizer, opt: dict, steps: int) -> Callable[[int], float]:
    """open_clip's schedulers, set per step: cosine_lr (one cosine cycle per round, TiC-CLIP's), or
    const_lr_cooldown for ConstantThenAnneal (lr held after the warmup, then a linear anneal to 0 over
    the last annealFraction of the steps: Ibrahim et al. 2024, "Simple and scalable strategies to
    continually pre-train large language models")."""
    if opt.get("schedule", "Cosine") == "ConstantThenAnneal":
        cooldown = max(1, round(opt.get("annealFraction", DEFAULT_ANNEAL_FRACTION) * steps))
        return const_lr_cooldown(optimizer, opt["lr"], opt["warmupSteps"], steps, cooldown)
    return cosine_lr(optimizer, opt["lr"], opt["warmupSteps"], steps)


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


# ---- the round, top to bottom ----


def run_round(plan: dict, settings: Settings | None = None) -> int:
    """One round: set up, resume or warm start, the steps, export, the summary. 0 when done (or done before)."""
    started = time.time()
    dist = Dist.from_env()
    s3_settings = S3Settings.from_plan(plan)
    s3 = S3(s3_settings)
    if s3.exists(plan["output"]["uri"] + "_SUCCESS"):
        log.info("%s_SUCCESS exists: round already done, nothing to do", plan["output"]["uri"])
        return 0

    setup = RoundSetup.create(plan, settings, dist, s3_settings, s3)
    state = resume_or_warm_start(setup)
    train_step = TrainStep.build(setup, state.model)
    times = ProcessTimes(started, train_before=state.train_time)
    _log_start(setup, state)
    train_step.forward.train()
    control = _Control(dist, setup.settings.control_every)
    train_steps(setup, state, train_step, control, times)

    totals = RoundTotals.gather(setup, state, control.group)
    if dist.is_main:
        setup.progress.phase("exporting")
        wall = time.time() - times.started
        save_optimizer_state(setup, state)
        merged = merge_round(setup, state)
        model_json, final_digest, parity = export_model(setup, state.model)
        summary = _summary(setup, state, times, totals, wall, final_digest, parity, merged)
        publish(setup, model_json, summary)
    if dist.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


@dataclass
class RoundSetup:
    """What this process is given for the round, fixed once set up: the plan, its place among the
    ranks, S3, the device and precision, the data sources, and every rank's batch size per step."""

    plan: dict
    dist: Dist
    settings: Settings
    s3_settings: S3Settings
    s3: S3
    device: torch.device
    precision: str  # effective: fp32 without CUDA
    progress: Progress
    prep: Preprocessing
    slice_ids: list[str]
    shards: list[Shard]
    weights: list[float]
    per_step: list[list[int]]  # per step, per rank
    merge: MergeSetting | None = None

    @staticmethod
    def create(plan: dict, settings: Settings | None, dist: Dist, s3_settings: S3Settings, s3: S3) -> RoundSetup:
        """Device, settings and progress reporting; then the plan's data, checked (exit 2 when bad)."""
        out = plan["output"]["uri"]
        device = _setup_device(dist)
        cuda = device.type == "cuda"
        settings = settings or Settings.from_env(cuda=cuda, local_world_size=dist.local_world_size)
        put = (
            (lambda uri, body: s3.put_bytes(uri, body, "application/json"))
            if dist.is_main and settings.progress
            else None
        )
        progress = Progress(put, out + "progress.json", plan["data"]["samples"], 0, settings.progress_seconds)
        progress.phase("loading")
        sources = shards_from_plan(plan)  # slice ids, shards, weights
        for sh in sources[1]:
            if not s3.exists(sh.uri):
                raise PermanentError(f"shard {sh.uri} does not exist", sh.field)
        per_step = step_sizes(plan["data"]["samples"], plan["optimizer"]["batchSize"], dist.world_size)
        progress.steps_total = len(per_step)
        precision = plan["optimizer"]["precision"] if cuda else "fp32"
        prep = Preprocessing.for_model(plan["model"]["architecture"])
        merge = MergeSetting.from_plan(plan)
        return RoundSetup(
            plan, dist, settings, s3_settings, s3, device, precision, progress, prep, *sources, per_step, merge
        )

    @property
    def out(self) -> str:
        return self.plan["output"]["uri"]

    @property
    def partial_uri(self) -> str:
        return self.out + "partial/latest.pt"

    @property
    def arch(self) -> str:
        return self.plan["model"]["architecture"]

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def total_steps(self) -> int:
        return len(self.per_step)

    @cached_property  # with skip_bound: read every step, computed once
    def sizes(self) -> list[int]:
        """This rank's batch size per step."""
        return [s[self.dist.rank] for s in self.per_step]

    @property
    def fingerprint(self) -> str:
        return plan_fingerprint(self.plan, self.dist.world_size)

    @property
    def max_skipped(self) -> float:
        return self.plan["data"].get("maxSkippedFraction", DEFAULT_MAX_SKIPPED_FRACTION)

    @cached_property
    def skip_bound(self) -> SkipBound:
        """This rank's share: the ranks' bounds add up to the round's."""
        return SkipBound(self.max_skipped, sum(self.sizes))

    @property
    def checkpoint_interval_s(self) -> float:
        return self.plan["checkpointIntervalMinutes"] * 60

    def loader_workers(self, streams: StreamConfig) -> int:
        return streams.streams if self.settings.data_workers > 0 else 0

    def check_skips(self, skipped: SkipStats) -> None:
        """Fails the round (exit 2) once this rank skipped more bad samples than its bound allows."""
        bound = self.skip_bound
        if skipped.total > bound.limit:
            raise skipped.too_many(self.shards, bound.limit, bound.fraction, bound.budget)


@dataclass
class RoundState:
    """What the round carries from step to step, and its intra-round checkpoint (`to_checkpoint`,
    `from_checkpoint`): weights, optimizer, scaler, where each of this rank's streams stands, and the
    counts a resumed round goes on from. The checkpoint's keys are its format: checkpoints written by
    earlier trainers resume, so keep them."""

    model: torch.nn.Module  # unwrapped (DDP wraps it in TrainStep)
    optimizer: torch.optim.Optimizer
    scheduler: Callable[[int], float]  # open_clip's cosine_lr: sets the lr for a step
    scaler: torch.amp.GradScaler | None  # amp (fp16) only
    streams: StreamConfig  # from the checkpoint on resume: the exact continuation
    init_digest: str  # of the weights the round started from
    positions: list[StreamState]  # this rank's, per stream
    per_source: list[int]  # this rank's samples per slice
    digest: str  # this rank's chain over its batches' sample ids
    skipped: SkipStats = field(default_factory=SkipStats)  # this rank's
    step: int = 0
    samples_seen: int = 0  # every rank's
    loss_curve: list[dict] = field(default_factory=list)
    resumes: list[dict] = field(default_factory=list)
    train_time: float = 0.0  # seconds, every process of the round
    optimizer_from: str | None = None  # optimizer.state Carry: whose AdamW moments (not after a resume)

    @staticmethod
    def create(setup: RoundSetup, model, init_digest: str, streams: StreamConfig) -> RoundState:
        """Step 0 of the round on `model` (moved to the device here)."""
        model.to(setup.device)
        if setup.settings.grad_checkpointing:
            model.set_grad_checkpointing(True)
        optimizer = make_optimizer(model, setup.plan, fused=setup.settings.fused_adamw)
        opt = setup.plan["optimizer"]
        return RoundState(
            model=model,
            optimizer=optimizer,
            scheduler=lr_schedule(optimizer, opt, setup.total_steps),
            scaler=torch.amp.GradScaler("cuda") if setup.precision == "amp" else None,
            streams=streams,
            init_digest=init_digest,
            positions=[StreamState.initial(streams.open_shards)] * streams.streams,
            per_source=[0] * len(setup.slice_ids),
            digest=hashlib.sha256(f"rank {setup.dist.rank}".encode()).hexdigest(),
        )

    @staticmethod
    def from_checkpoint(ck: dict, setup: RoundSetup, model) -> RoundState:
        """The state `to_checkpoint` saved, on `model` (loaded here, then moved to the device)."""
        model.load_state_dict(ck["model"])
        state = RoundState.create(setup, model, ck["init_digest"], StreamConfig.from_json(ck["streamConfig"]))
        state.optimizer.load_state_dict(ck["optimizer"])
        if state.scaler is not None and ck.get("scaler"):
            state.scaler.load_state_dict(ck["scaler"])
        state.step, state.samples_seen = ck["step"], ck["samples_seen"]
        state.loss_curve, state.resumes, state.train_time = ck["loss_curve"], ck["resumes"], ck["train_time_s"]
        mine = ck["ranks"][setup.dist.rank]
        state.positions = [StreamState.from_json(d) for d in mine["streams"]]
        state.per_source, state.digest = mine["per_source"], mine["digest"]
        state.skipped = SkipStats.from_state(mine.get("skipped"))
        torch.set_rng_state(ck["torch_rng"])
        return state

    def rank_checkpoint(self) -> dict:
        """This rank's part of the checkpoint (rank 0 stores every rank's)."""
        return {
            "streams": [s.to_json() for s in self.positions],
            "per_source": self.per_source,
            "digest": self.digest,
            "skipped": self.skipped.to_state(),
        }

    def to_checkpoint(self, fingerprint: str, ranks: list[dict], progress_history: list[dict]) -> dict:
        return {
            "fingerprint": fingerprint,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "step": self.step,
            "samples_seen": self.samples_seen,
            "ranks": ranks,
            "streamConfig": self.streams.to_json(),
            "loss_curve": self.loss_curve,
            "resumes": self.resumes,
            "train_time_s": self.train_time,
            "init_digest": self.init_digest,
            "torch_rng": torch.get_rng_state(),
            "progress_history": progress_history,
        }

    def advance(self, batch: dict, samples: int) -> None:
        """Host-side bookkeeping after a step on `batch` (`samples`: every rank's): nothing waits for the device."""
        self.samples_seen += samples
        self.per_source = [a + b for a, b in zip(self.per_source, batch["counts"], strict=True)]
        self.positions[batch["stream"]] = StreamState.from_json(batch["state"])
        self.digest = hashlib.sha256((self.digest + batch["digest"]).encode()).hexdigest()
        self.skipped.merge(SkipStats.from_state(batch["skipped"]))
        self.step += 1


def resume_or_warm_start(setup: RoundSetup) -> RoundState:
    """From the round's own intra-round checkpoint (exactly where it stopped), else step 0 on the plan's
    initCheckpoint (weights only), else step 0 on the seeded random init."""
    torch.manual_seed(setup.plan["seed"])
    model = models.create(setup.arch)
    with tempfile.TemporaryDirectory() as tmp:
        ck = _read_partial(setup, tmp)
        if ck is None and setup.plan["model"]["initCheckpoint"]:
            warm = checkpoints.fetch(setup.s3, training_start(setup), tmp)
            checkpoints.load_initial(model, setup.arch, warm)
            log.info("warm start from %s (%s)", warm.uri, "TorchScript" if warm.torchscript else "weights only")
    if ck is None:
        s = setup.settings
        state = RoundState.create(
            setup, model, weights_digest(model), StreamConfig(max(1, s.data_workers), s.open_shards, s.shuffle_window)
        )
        load_optimizer_state(setup, state)
        return state
    log.info("resuming from %s at step %d, %d samples seen", setup.partial_uri, ck["step"], ck["samples_seen"])
    state = RoundState.from_checkpoint(ck, setup, model)
    setup.progress.resumed(state.step, state.samples_seen, ck.get("progress_history"))
    state.resumes.append({"step": state.step, "samplesSeen": state.samples_seen, "at": utc_now()})
    return state


def training_start(setup: RoundSetup) -> str:
    """The checkpoint a warm-started round trains from: initCheckpoint, except under merge EMA, where
    training goes on from the trained weights kept in raw/ beside it when there are some (merge.py)."""
    init = setup.plan["model"]["initCheckpoint"]
    if setup.merge is not None and setup.merge.mode == "EMA":
        raw = raw_beside(init)
        if raw is not None and setup.s3.exists(raw):
            return raw
    return init


def _carries_state(setup: RoundSetup) -> bool:
    return setup.plan["optimizer"].get("state", "Reset") == "Carry"


def load_optimizer_state(setup: RoundSetup, state: RoundState) -> None:
    """optimizer.state Carry on a warm-started round: the AdamW moments that the round of initCheckpoint
    saved beside it, under this plan's hyperparameters. A checkpoint with none beside it (a run's initial
    checkpoint, a round that reset) leaves the optimizer fresh, as the summary's config records."""
    init = setup.plan["model"]["initCheckpoint"]
    state.optimizer_from = None
    folder = round_dir_of(init) if init and _carries_state(setup) else None
    if folder is None or not setup.s3.exists(folder + OPTIMIZER_STATE):
        if _carries_state(setup) and init:
            log.info("optimizer.state Carry: no %s beside %s, fresh AdamW", OPTIMIZER_STATE, init)
        return
    uri = folder + OPTIMIZER_STATE
    hyper = [{k: g[k] for k in ("lr", "weight_decay", "betas", "eps")} for g in state.optimizer.param_groups]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, OPTIMIZER_STATE)
        setup.s3.download(uri, path, field="optimizer.state")
        try:
            state.optimizer.load_state_dict(torch.load(path, map_location=setup.device, weights_only=True))
        except (ValueError, KeyError, RuntimeError) as e:
            raise PermanentError(f"{uri} does not fit this model's optimizer: {e}", "optimizer.state") from e
    for g, h in zip(state.optimizer.param_groups, hyper, strict=True):
        g.update(h)
    state.optimizer_from = uri
    log.info("optimizer.state Carry: AdamW moments from %s", uri)


def save_optimizer_state(setup: RoundSetup, state: RoundState) -> None:
    """optimizer.state Carry: the round's final AdamW state beside its checkpoint, for the next round."""
    if not _carries_state(setup):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, OPTIMIZER_STATE)
        torch.save(state.optimizer.state_dict(), path)
        setup.s3.upload(path, setup.out + OPTIMIZER_STATE)


def _read_partial(setup: RoundSetup, tmp: str) -> dict | None:
    """The round's intra-round checkpoint, if there is one and it was written for this plan."""
    if not setup.s3.exists(setup.partial_uri):
        return None
    path = os.path.join(tmp, "partial.pt")
    setup.s3.download(setup.partial_uri, path)
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if ck.get("fingerprint") != setup.fingerprint or "streamConfig" not in ck:
        log.warning("%s is from a different plan: ignoring it and starting the round afresh", setup.partial_uri)
        return None
    return ck


def save_partial(setup: RoundSetup, state: RoundState) -> None:
    """The intra-round checkpoint: rank 0 stores every rank's part; no rank goes on (or exits) before."""
    setup.progress.phase("checkpointing")
    ranks = [state.rank_checkpoint()]
    if setup.dist.enabled:
        ranks = [None] * setup.dist.world_size
        torch.distributed.all_gather_object(ranks, state.rank_checkpoint())
    if setup.dist.is_main:
        ckpt = state.to_checkpoint(setup.fingerprint, ranks, setup.progress.history)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(ckpt, os.path.join(tmp, "latest.pt"))
            setup.s3.upload(os.path.join(tmp, "latest.pt"), setup.partial_uri)
        log.info(
            "intra-round checkpoint at step %d (%d samples) -> %s", state.step, state.samples_seen, setup.partial_uri
        )
    if setup.dist.enabled:  # no rank exits (preemption) before the checkpoint is stored
        torch.distributed.barrier()


# ---- the steps ----


@dataclass
class ProcessTimes:
    """This process's timings (not checkpointed): the summary's throughput, the checkpoint timer."""

    started: float  # time.time() when run_round began
    train_before: float = 0.0  # training seconds of the round's earlier processes
    data_wait: float = 0.0  # waiting for the loader
    decode: float = 0.0  # in loader workers
    segment: float = field(default_factory=time.perf_counter)  # start of the training time not yet counted
    last_checkpoint: float = field(default_factory=time.monotonic)

    def end_segment(self, state: RoundState) -> None:
        now = time.perf_counter()
        state.train_time += now - self.segment
        self.segment = now


@dataclass
class TrainStep:
    """One optimizer step on this rank's batch: the (DDP-wrapped, maybe compiled) forward, ClipLoss,
    the gradient scaler and clipping, the logit_scale clamp."""

    forward: torch.nn.Module  # DDP-wrapped model (or the model)
    compiled: Callable
    loss: ClipLoss
    local_loss: ClipLoss  # for a last step whose batch sizes differ across ranks
    autocast: Callable
    mean: torch.Tensor  # image normalisation on the device, for uint8 input
    inv_std: torch.Tensor
    per_step: list[list[int]]
    device: torch.device
    grad_clip_norm: float | None

    @staticmethod
    def build(setup: RoundSetup, model) -> TrainStep:
        dist, device = setup.dist, setup.device
        ddp = (
            torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if setup.cuda else None)
            if dist.enabled
            else model
        )
        return TrainStep(
            forward=ddp,
            # The last step may be smaller (exact budget): it runs eagerly instead of recompiling for its shape.
            compiled=torch.compile(ddp) if setup.settings.compile else ddp,
            loss=ClipLoss(
                local_loss=dist.enabled,
                gather_with_grad=dist.enabled,
                cache_labels=True,
                rank=dist.rank,
                world_size=dist.world_size,
            ),
            local_loss=ClipLoss(),
            autocast={
                "amp_bf16": lambda: torch.autocast("cuda", dtype=torch.bfloat16),
                "amp": lambda: torch.autocast("cuda", dtype=torch.float16),
            }.get(setup.precision, nullcontext),
            mean=torch.tensor(setup.prep.mean, device=device).view(1, 3, 1, 1) * 255,
            inv_std=1 / (torch.tensor(setup.prep.std, device=device).view(1, 3, 1, 1) * 255),
            per_step=setup.per_step,
            device=device,
            grad_clip_norm=setup.settings.grad_clip_norm,
        )

    def __call__(self, state: RoundState, batch: dict) -> torch.Tensor:
        """The step `state.step` on `batch`; the loss stays on the device (no sync)."""
        state.scheduler(state.step)
        # uint8 NHWC over the bus (4x fewer bytes than float), NCHW-contiguous before the float
        # conversion so the model sees the layout it sees from open_clip's loader.
        images = batch["images"].to(self.device, non_blocking=True).permute(0, 3, 1, 2).contiguous()
        images = (images.float() - self.mean) * self.inv_std
        tokens = batch["tokens"].to(self.device, non_blocking=True)
        sizes = self.per_step[state.step]
        uneven = len(set(sizes)) > 1  # all_gather needs equal sizes: local loss this step
        fwd = self.forward if (uneven or sizes != self.per_step[0]) else self.compiled
        with self.autocast():
            img_f, txt_f, scale = fwd(images, tokens)[:3]
            loss = (self.local_loss if uneven else self.loss)(img_f, txt_f, scale)
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
            if self.grad_clip_norm:
                state.scaler.unscale_(state.optimizer)
                torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.grad_clip_norm)
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            loss.backward()
            if self.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.grad_clip_norm)
            state.optimizer.step()
        with torch.no_grad():
            state.model.logit_scale.clamp_(0, math.log(100))
        return loss


def train_steps(setup: RoundSetup, state: RoundState, train_step: TrainStep, control: _Control, times: ProcessTimes):
    """The round's remaining steps. Checkpoints when the interval has passed, on SIGTERM (then raises
    Preempted) and after the last step, so a failed export or upload does not retrain the round."""
    with _SigTerm() as sigterm:
        setup.progress.phase("training")
        times.segment = time.perf_counter()
        if state.step < setup.total_steps:
            loader = iter(make_loader(_round_batches(setup, state), setup.loader_workers(state.streams), setup.cuda))
            while state.step < setup.total_steps:
                batch, wait = _next_batch(loader, state.step, times)
                samples = sum(setup.per_step[state.step])  # every rank's
                loss = train_step(state, batch)
                state.advance(batch, samples)
                setup.check_skips(state.skipped)
                times.decode += batch["decodeSeconds"]
                setup.progress.step(samples, wait, loss, state.optimizer.param_groups[0]["lr"], state.skipped)
                _log_step(setup, state, loss, times)
                _checkpoint_if_due(setup, state, control, sigterm.hit, times)
            del loader
            times.end_segment(state)
            save_partial(setup, state)
        control.close()


def _round_batches(setup: RoundSetup, state: RoundState) -> RoundBatches:
    """This rank's remaining steps, from where its streams stand."""
    return RoundBatches(
        setup.s3_settings,
        setup.shards,
        setup.weights,
        len(setup.slice_ids),
        setup.prep,
        setup.plan["seed"],
        setup.dist.rank,
        setup.sizes,
        state.step,
        state.positions,
        state.streams,
        setup.settings.prefetch_shards,
        setup.settings.stream_retries,
        setup.skip_bound,
        state.skipped.to_state(),
    )


def _next_batch(loader, step: int, times: ProcessTimes) -> tuple[dict, float]:
    """The batch of `step` and the seconds waited for it; a loader worker's TrainerError is raised here."""
    t_data = time.perf_counter()
    batch = next(loader)
    wait = time.perf_counter() - t_data
    times.data_wait += wait
    if "error" in batch:
        raise batch["error"]
    if batch["step"] != step:
        raise RuntimeError(f"loader returned step {batch['step']}, expected {step}")
    return batch, wait


def _log_step(setup: RoundSetup, state: RoundState, loss, times: ProcessTimes) -> None:
    """On the first, the last and every loss_curve_points-th step: a loss curve point (loss.item() syncs the
    device: only here) and a log line."""
    total = setup.total_steps
    if not (state.step % max(1, total // setup.settings.loss_curve_points) == 0 or state.step in (1, total)):
        return
    lv, lr = float(loss.item()), state.optimizer.param_groups[0]["lr"]
    state.loss_curve.append({"step": state.step, "samplesSeen": state.samples_seen, "loss": lv, "lr": lr})
    log.info(
        "step %d/%d loss %.4f lr %.2e samples %d data wait %.1f%%",
        state.step,
        total,
        lv,
        lr,
        state.samples_seen,
        100 * times.data_wait / max(1e-9, time.perf_counter() - times.segment),
    )


def _checkpoint_if_due(setup: RoundSetup, state: RoundState, control: _Control, sigterm: bool, times: ProcessTimes):
    """The intra-round checkpoint when the ranks agree one is due (interval or SIGTERM); after it, SIGTERM
    raises Preempted. None after the last step: the round's end checkpoints anyway."""
    due = time.monotonic() - times.last_checkpoint >= setup.checkpoint_interval_s
    stop, due = control.poll(state.step, sigterm, due)
    if not (stop or due) or state.step >= setup.total_steps:
        return
    times.end_segment(state)
    save_partial(setup, state)
    times.last_checkpoint = time.monotonic()
    if stop:
        raise Preempted(f"preempted (SIGTERM) at step {state.step}/{setup.total_steps}; checkpoint saved")
    setup.progress.phase("training")


def _log_start(setup: RoundSetup, state: RoundState) -> None:
    log.info(
        "round %d: %s, %d samples in %d steps of global batch %d on %s (%s), world size %d, "
        "%d loader workers, %d streams x %d open shards",
        setup.plan["round"],
        setup.arch,
        setup.plan["data"]["samples"],
        setup.total_steps,
        setup.plan["optimizer"]["batchSize"],
        setup.device,
        setup.precision,
        setup.dist.world_size,
        setup.loader_workers(state.streams),
        state.streams.streams,
        state.streams.open_shards,
    )


# ---- after the steps: totals, export, summary ----


@dataclass
class RoundTotals:
    """Every rank's counts, gathered once the steps are done."""

    per_source: list[int]
    data_digests: list[str]  # per rank
    skipped: SkipStats

    @staticmethod
    def gather(setup: RoundSetup, state: RoundState, group) -> RoundTotals:
        """Every rank's totals (a collective: every rank calls it); checks that they add up to the budget."""
        if setup.dist.enabled:
            per_source = torch.tensor(state.per_source, dtype=torch.long)
            torch.distributed.all_reduce(per_source, group=group)
            digests = [None] * setup.dist.world_size
            torch.distributed.all_gather_object(digests, state.digest)
            skips = [None] * setup.dist.world_size
            torch.distributed.all_gather_object(skips, state.skipped.to_state())
            skipped = SkipStats()
            for st in skips:
                skipped.merge(SkipStats.from_state(st))
            totals = RoundTotals(per_source.tolist(), digests, skipped)
        else:
            totals = RoundTotals(state.per_source, [state.digest], state.skipped)
        budget = setup.plan["data"]["samples"]
        if state.samples_seen != budget or sum(totals.per_source) != state.samples_seen:
            raise RuntimeError(
                f"saw {state.samples_seen} samples ({sum(totals.per_source)} by source), budget {budget}"
            )
        return totals


def merge_round(setup: RoundSetup, state: RoundState) -> dict | None:
    """With a merge in the plan: the trained weights exported to raw/ (the evaluator scores them as the
    unmerged model), then the model replaced, on the CPU, by its merge with initCheckpoint's weights
    (merge.py). Returns the merge's record for the summary, with its cost."""
    m = setup.merge
    if m is None:
        return None
    raw_uri = setup.out + UNMERGED_DIR
    raw_json, raw_digest, _ = export_model(setup, state.model, raw_uri)
    setup.s3.put_bytes(raw_uri + "model.json", json.dumps(raw_json, indent=2).encode(), "application/json")
    t0 = time.perf_counter()
    init = setup.plan["model"]["initCheckpoint"]
    base_model = models.create(setup.arch)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints.load_initial(base_model, setup.arch, checkpoints.fetch(setup.s3, init, tmp))
    base = base_model.state_dict()
    load_seconds = time.perf_counter() - t0
    cost = merge_into(state.model.to("cpu"), base, m.coefficient)
    log.info("merge %s (coefficient %.3g) with %s: %.2f s", m.mode, m.coefficient, init, cost["seconds"])
    return {
        "mode": m.mode,
        "coefficient": m.coefficient,
        "base": init,
        "trainedFrom": training_start(setup),
        "raw": {"uri": raw_uri, "weightsDigest": raw_digest},
        "baseLoadSeconds": load_seconds,
        **cost,
    }


def export_model(setup: RoundSetup, model, dest: str | None = None) -> tuple[dict, str, dict]:
    """checkpoint.pt and the two ONNX encoders, uploaded under `dest` (the round's folder by default);
    model.json's content, the weights' digest and the ONNX parity (a mismatch fails the round: exit 2)."""
    dest = dest or setup.out
    model = model.to("cpu").eval()
    with tempfile.TemporaryDirectory() as tmp:
        sd = model.state_dict()
        torch.save(
            {"epoch": 1, "name": f"{setup.plan['run']['name']}-r{setup.plan['round']:04d}", "state_dict": sd},
            os.path.join(tmp, "checkpoint.pt"),
        )
        info = export.export_onnx(model, setup.prep, tmp)
        parity = export.parity(model, setup.prep, tmp)
        if parity["minCosine"] < PARITY_MIN_COSINE:
            raise PermanentError(
                f"ONNX export does not match PyTorch (min cosine {parity['minCosine']:.5f})", "model.architecture"
            )
        model_json = {"architecture": setup.arch, **setup.prep.to_json(), **info}
        digest = weights_digest(sd)
        for name in ("checkpoint.pt", "image_encoder.onnx", "text_encoder.onnx"):
            setup.s3.upload(os.path.join(tmp, name), dest + name)
    return model_json, digest, parity


def _summary(
    setup: RoundSetup,
    state: RoundState,
    times: ProcessTimes,
    totals: RoundTotals,
    wall: float,
    final_digest: str,
    parity: dict,
    merged: dict | None = None,
) -> TrainSummary:
    plan, world_size = setup.plan, setup.dist.world_size
    tt = max(state.train_time, 1e-9)
    return TrainSummary(
        run=plan["run"],
        round=plan["round"],
        architecture=setup.arch,
        init_checkpoint=plan["model"]["initCheckpoint"],
        samples_budget=plan["data"]["samples"],
        samples_seen=state.samples_seen,
        samples_per_source=dict(zip(setup.slice_ids, totals.per_source, strict=True)),
        expected_share={s["sliceId"]: s["expectedShare"] for s in plan["data"]["sources"]},
        steps=state.step,
        batch_size=plan["optimizer"]["batchSize"],
        world_size=world_size,
        device=str(setup.device),
        precision=Precision(requested=plan["optimizer"]["precision"], effective=setup.precision),
        wall_time_seconds=wall,
        train_time_seconds=state.train_time,
        throughput=Throughput(
            samples_per_second=state.samples_seen / tt,
            samples_per_second_per_process=state.samples_seen / tt / world_size,
            data_wait_seconds_this_process=times.data_wait,
            data_wait_share_this_process=times.data_wait / max(1e-9, state.train_time - times.train_before),
            decode_seconds_in_workers=times.decode,
            steps_this_process=state.step - (state.resumes[-1]["step"] if state.resumes else 0),
        ),
        loss_curve=state.loss_curve,
        progress_history=setup.progress.history,
        resumes=state.resumes,
        init_weights_digest=state.init_digest,
        final_weights_digest=final_digest,
        data_digests=totals.data_digests,
        skipped_samples=totals.skipped.summary(
            setup.shards, setup.max_skipped, skip_limit(setup.max_skipped, plan["data"]["samples"])
        ),
        onnx_parity=parity,
        merge=merged,
        config={
            **setup.settings.to_json(),
            "loaderWorkers": setup.loader_workers(state.streams),
            "streams": state.streams.to_json(),
            "optimizer": plan["optimizer"],
            "perRankBatch": plan["optimizer"]["batchSize"] // world_size,
            "adam": get_default_params(setup.arch),
            "scheduler": plan["optimizer"].get("schedule", "Cosine"),
            "optimizerStateFrom": state.optimizer_from,
            "seed": plan["seed"],
            "checkpointIntervalMinutes": plan["checkpointIntervalMinutes"],
        },
    )


def publish(setup: RoundSetup, model_json: dict, summary: TrainSummary) -> None:
    """model.json, train_summary.json, then _SUCCESS (the round is done); the intra-round checkpoint goes."""
    s3, out = setup.s3, setup.out
    s3.put_bytes(out + "model.json", json.dumps(model_json, indent=2).encode(), "application/json")
    s3.put_bytes(out + "train_summary.json", json.dumps(summary.to_json(), indent=2).encode(), "application/json")
    s3.put_bytes(out + "_SUCCESS", b"", "text/plain")
    try:
        s3.delete(setup.partial_uri)
    except Exception as e:  # the round is done; a leftover partial is harmless
        log.warning("could not delete the intra-round checkpoint: %s", e)
    log.info("round done: %s_SUCCESS", out)
