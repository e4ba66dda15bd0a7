"""train_summary.json: what a finished round reports, as typed fields.

Field names are snake_case here and camelCase in the JSON (`to_json`), in declaration order; values
that are documents of their own (the run, the loss curve, the skipped samples, the resolved config)
stay dicts. The operator reads the document with `operator/api/round-documents.ts`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def _to_json(value):
    if is_dataclass(value):
        return {_camel(f.name): _to_json(getattr(value, f.name)) for f in fields(value)}
    return value


@dataclass(frozen=True)
class Precision:
    requested: str  # the plan's optimizer.precision
    effective: str  # fp32 without CUDA


@dataclass(frozen=True)
class Throughput:
    samples_per_second: float  # over the round's training time, every process of it
    samples_per_second_per_process: float
    data_wait_seconds_this_process: float
    data_wait_share_this_process: float
    decode_seconds_in_workers: float
    steps_this_process: int


@dataclass(frozen=True)
class TrainSummary:
    run: dict
    round: int
    architecture: str
    init_checkpoint: str | None
    samples_budget: int
    samples_seen: int
    samples_per_source: dict[str, int]  # by slice id
    expected_share: dict[str, float]
    steps: int
    batch_size: int  # global
    world_size: int
    device: str
    precision: Precision
    wall_time_seconds: float  # this process, up to the export
    train_time_seconds: float  # every process of the round
    throughput: Throughput
    loss_curve: list[dict]
    progress_history: list[dict]
    resumes: list[dict]
    init_weights_digest: str
    final_weights_digest: str
    data_digests: list[str]  # per rank: a chain over its batches' sample ids
    skipped_samples: dict
    onnx_parity: dict
    config: dict
    # The plan's merge: mode, coefficient, base, trainedFrom, raw (uri, weightsDigest) and its cost
    # (seconds, baseLoadSeconds, extraBytes, peakRssBytes); None without one.
    merge: dict | None = None

    def to_json(self) -> dict:
        return _to_json(self)
