"""Weight-space merging after a round trains, before export (the plan's `merge`, docs/tic-clip.md).

merged = (1 - c) x base + c x trained, parameter by parameter (float tensors; integer buffers are the
trained model's), with `base` the weights of the plan's `model.initCheckpoint`:

- Interpolate (WiSE-FT-style patching, Wortsman et al. 2022; FoMo-in-Flux, Roth et al. 2024): the round
  trains from initCheckpoint and the merge pulls the result back towards it. The merge is the round's
  model: the next round warm-starts from it, so the chain never leaves the merged models.
- EMA over rounds: initCheckpoint is the previous round's merged model (the EMA so far), but training
  goes on from the previous round's trained weights, kept in `raw/` beside its checkpoint, so the
  optimisation trajectory is not pulled back each round and only the promoted model is averaged.
  Without a raw/ beside initCheckpoint (the first merged round, or a run's initial checkpoint) it
  trains from initCheckpoint, and the first merge is an interpolation.

The trained weights are exported to raw/ before the merge, so the evaluator scores both.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import torch

from .errors import PermanentError

MODES = ("Interpolate", "EMA")
UNMERGED_DIR = "raw/"  # operator/api/round-plan.ts UNMERGED_DIR
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class MergeSetting:
    mode: str
    coefficient: float

    @staticmethod
    def from_plan(plan: dict) -> MergeSetting | None:
        """The plan's merge, checked beyond its JSON Schema (a bad one is a bad plan: exit 2)."""
        m = plan.get("merge")
        if m is None:
            return None
        if m.get("mode") not in MODES:
            raise PermanentError(f"unknown merge mode {m.get('mode')!r} (one of {', '.join(MODES)})", "merge.mode")
        c = m.get("coefficient")
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0 < c <= 1:
            raise PermanentError(f"merge coefficient {c!r} must be in (0, 1]", "merge.coefficient")
        if not plan["model"]["initCheckpoint"]:
            raise PermanentError(
                "merge needs a warm-started round: model.initCheckpoint is null (nothing to merge with)", "merge"
            )
        return MergeSetting(m["mode"], float(c))


def round_dir_of(checkpoint_uri: str) -> str | None:
    """The round folder of a round's checkpoint (merged or raw/), or None for any other checkpoint."""
    for tail in (UNMERGED_DIR + CHECKPOINT, CHECKPOINT):
        if checkpoint_uri.endswith("/" + tail):
            return checkpoint_uri[: -len(tail)]
    return None


def raw_beside(checkpoint_uri: str) -> str | None:
    """Where the trained (unmerged) weights of a merged round's checkpoint are."""
    d = round_dir_of(checkpoint_uri)
    return None if d is None or checkpoint_uri.endswith(UNMERGED_DIR + CHECKPOINT) else d + UNMERGED_DIR + CHECKPOINT


def interpolate(base: dict, trained: dict, coefficient: float) -> dict:
    """(1 - c) x base + c x trained per float tensor; other tensors from `trained`. The keys and shapes
    must match (both are the plan's architecture)."""
    if base.keys() != trained.keys():
        raise PermanentError(
            f"merge: the base checkpoint's keys differ from the model's ({sorted(base.keys() ^ trained.keys())[:3]})",
            "model.initCheckpoint",
        )
    out = {}
    for k, t in trained.items():
        b = base[k]
        if b.shape != t.shape:
            raise PermanentError(f"merge: {k} has shape {tuple(b.shape)} in the base, {tuple(t.shape)} trained", k)
        out[k] = torch.lerp(b.to(t.dtype), t, coefficient) if t.is_floating_point() else t.clone()
    return out


def merge_into(model: torch.nn.Module, base: dict, coefficient: float) -> dict:
    """Replaces `model`'s weights (on the CPU) by the merge with `base`; returns what it cost."""
    t0 = time.perf_counter()
    merged = interpolate(base, model.state_dict(), coefficient)
    model.load_state_dict(merged)
    seconds = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in base.values())
    return {
        "seconds": seconds,
        # Held at once: the base and the merged copy beside the model's own weights.
        "extraBytes": 2 * nbytes,
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
