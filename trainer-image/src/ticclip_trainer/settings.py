"""Trainer settings: one place, read from the environment once.

`Settings`: what the RoundPlan does not carry. The plan says *what* to train (model, data, budget,
optimizer); these say *how* this pod runs it (processes, loader workers, kernels). None of them
changes which samples a round sees except `data_workers`, `open_shards` and `shuffle_window`, which
define the streams: a resumed round reuses the values saved in its intra-round checkpoint. The
resolved values go into train_summary.json.

`S3Settings`: how the pod reaches S3. The operator sets the connection variables (its
api/s3-connection.ts S3_ENV: AWS_REGION, S3_ENDPOINT, S3_ADDRESSING_STYLE) in every pod it starts
and copies them into the plan; credentials come from the environment / default chain only.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from .errors import PermanentError
from .progress import DEFAULT_INTERVAL_S as DEFAULT_PROGRESS_SECONDS

S3_ADDRESSING_STYLES = ("Path", "VirtualHost")  # the spec's values (api/s3-connection.ts)
DEFAULT_OPEN_SHARDS = 8  # shards read in parallel per stream: batches mix slices (2 x 0.5^8 < 1% single-slice)
DEFAULT_SHUFFLE_WINDOW = 2048  # samples (encoded) per stream shuffled together; ~37 MB of 18 KiB JPEGs


def _flag(env, name: str, default: bool) -> bool:
    v = env.get(name, "auto").strip().lower()
    if v in ("", "auto"):
        return default
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise PermanentError(f"{v!r}: expected 1, 0 or auto", name)


def _num(env, name: str, default, cast=int, minimum=0):  # a bad value fails every retry: exit 2
    raw = env.get(name, "")
    try:
        v = cast(raw) if raw.strip() else default
    except ValueError as e:
        raise PermanentError(f"{raw!r}: not a number", name) from e
    if v < minimum:
        raise PermanentError(f"{raw!r}: must be >= {minimum}", name)
    return v


@dataclass(frozen=True)
class S3Settings:
    region: str
    endpoint: str | None  # None: AWS
    addressing_style: str | None = None  # Path or VirtualHost; None: Path with an endpoint, else VirtualHost
    max_attempts: int = 4  # per request, the first included (botocore "standard" retries)
    connect_timeout: float = 5.0

    def __post_init__(self):
        if self.addressing_style is None:
            object.__setattr__(self, "addressing_style", "Path" if self.endpoint else "VirtualHost")
        if self.addressing_style not in S3_ADDRESSING_STYLES:
            raise PermanentError(
                f"{self.addressing_style!r}: expected one of {', '.join(S3_ADDRESSING_STYLES)}", "S3_ADDRESSING_STYLE"
            )

    @property
    def boto_addressing_style(self) -> str:
        """botocore's s3.addressing_style. Without an endpoint (AWS), VirtualHost is botocore's "auto":
        virtual-hosted for every bucket name that can be a host name, as the operator's JS client does;
        with an endpoint, "auto" would mean path, so VirtualHost is "virtual"."""
        if self.addressing_style == "Path":
            return "path"
        return "virtual" if self.endpoint else "auto"

    @staticmethod
    def from_env(env: dict | None = None) -> S3Settings:
        env = os.environ if env is None else env
        return S3Settings(
            region=env.get("AWS_REGION") or "us-east-1",
            endpoint=env.get("S3_ENDPOINT") or None,
            addressing_style=env.get("S3_ADDRESSING_STYLE") or None,
            **S3Settings._client_env(env),
        )

    @staticmethod
    def from_plan(plan: dict, env: dict | None = None) -> S3Settings:
        """The connection the plan names (plans before the addressingStyle field resolve it from the endpoint)."""
        env = os.environ if env is None else env
        s3 = plan["s3"]
        return S3Settings(
            region=s3["region"],
            endpoint=s3["endpoint"],
            addressing_style=s3.get("addressingStyle"),
            **S3Settings._client_env(env),
        )

    @staticmethod
    def _client_env(env) -> dict:
        return {
            "max_attempts": _num(env, "TICCLIP_S3_MAX_ATTEMPTS", 4, minimum=1),
            "connect_timeout": _num(env, "TICCLIP_S3_CONNECT_TIMEOUT", 5.0, float),
        }


@dataclass(frozen=True)
class Settings:
    data_workers: int  # loader processes per rank; 0 decodes in the training process
    open_shards: int
    shuffle_window: int
    prefetch_shards: int  # next shard draws opened (GET issued, first MiB read) ahead of use
    compile: bool  # torch.compile the model
    fused_adamw: bool
    control_every: int  # steps between SIGTERM/checkpoint-timer agreements across ranks
    grad_checkpointing: bool
    grad_clip_norm: float  # 0 = off, as open_clip's default
    loss_curve_points: int  # at most this many loss samples (loss.item() syncs the GPU: only then)
    stream_retries: int  # reopen attempts of a broken shard stream (Range GET at its offset)
    progress: bool  # rank 0 writes progress.json (progress.py)
    progress_seconds: float  # at most one progress.json per this many seconds, besides phase changes

    @staticmethod
    def from_env(env: dict | None = None, *, cuda: bool, local_world_size: int = 1) -> Settings:
        env = os.environ if env is None else env

        def flag(name: str, default: bool) -> bool:
            return _flag(env, name, default)

        def num(name: str, default, cast=int, minimum=0):
            return _num(env, name, default, cast, minimum)

        return Settings(
            data_workers=num("TICCLIP_DATA_WORKERS", default_workers(local_world_size, cpus=pod_cpus(env))),
            open_shards=num("TICCLIP_OPEN_SHARDS", DEFAULT_OPEN_SHARDS, minimum=1),
            shuffle_window=num("TICCLIP_SHUFFLE_WINDOW", DEFAULT_SHUFFLE_WINDOW, minimum=1),
            prefetch_shards=num("TICCLIP_PREFETCH_SHARDS", 2),
            # Compiled step measured +36% samples/s over eager on one H200 (ViT-B-32, bf16, batch 256);
            # compiling costs about a minute once per round, so CPU runs stay eager.
            compile=flag("TICCLIP_COMPILE", cuda),
            fused_adamw=flag("TICCLIP_FUSED_ADAMW", cuda),
            control_every=num("TICCLIP_CONTROL_EVERY", 10, minimum=1),
            grad_checkpointing=flag("TICCLIP_GRAD_CHECKPOINTING", False),
            grad_clip_norm=num("TICCLIP_GRAD_CLIP_NORM", 0.0, float),
            loss_curve_points=200,
            stream_retries=num("TICCLIP_S3_STREAM_RETRIES", 8),
            progress=flag("TICCLIP_PROGRESS", True),
            progress_seconds=num("TICCLIP_PROGRESS_SECONDS", DEFAULT_PROGRESS_SECONDS, float),
        )

    def to_json(self) -> dict:
        return asdict(self)


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this container may use: its affinity mask, capped by a cgroup CPU quota (a pod's limit)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def _cgroup_quota(root: str) -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        with open(os.path.join(root, "cpu.max")) as f:
            q, p = f.read().split()[:2]
        return None if q == "max" else int(q) / int(p)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            q = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            p = int(f.read())
        return None if q <= 0 else q / p
    except (OSError, ValueError):
        return None


def pod_cpus(environ=None) -> int:
    """CPUs the pod plans for: its CPU request when it has one (TICCLIP_CPU_REQUEST, whole CPUs rounded
    up, set by the operator through the Downward API), capped by what the container may use; else the latter.
    The request is what the pod is guaranteed; sizing from a far higher limit would oversubscribe the node."""
    environ = os.environ if environ is None else environ
    cpus = usable_cpus()
    raw = environ.get("TICCLIP_CPU_REQUEST", "").strip()
    try:
        request = int(raw) if raw else 0
    except ValueError as e:
        raise PermanentError(f"{raw!r}: not a whole number of CPUs", "TICCLIP_CPU_REQUEST") from e
    return min(cpus, request) if request > 0 else cpus


def default_workers(local_world_size: int = 1, cpus: int | None = None) -> int:
    """Loader workers per rank: the pod's CPUs shared by its ranks, one CPU each left to the rank itself."""
    cpus = pod_cpus() if cpus is None else cpus
    return max(1, cpus // max(1, local_world_size) - 1)
