"""Test helpers: RoundPlans and S3 access for the trainer tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SRC = os.path.join(os.path.dirname(__file__), "..", "src")


def source(
    bucket: str, slice_id: str, manifest: dict, weight: float = 1.0, share: float = 1.0, prefix: str = "slices"
) -> dict:
    return {
        "sliceId": slice_id,
        "weight": weight,
        "expectedShare": share,
        "shards": [
            {"uri": f"s3://{bucket}/{prefix}/{slice_id}/{s['key']}", "samples": s["samples"]}
            for s in manifest["shards"]
        ],
    }


def make_plan(
    bucket: str,
    out: str,
    sources: list[dict],
    samples: int,
    *,
    round_: int = 0,
    init: str | None = None,
    arch: str = "ticclip-tiny",
    batch: int = 32,
    lr: float = 2e-3,
    warmup: int = 5,
    interval: float = 10.0,
    seed: int = 0,
    endpoint: str | None = None,
) -> dict:
    return {
        "schemaVersion": 1,
        "run": {"namespace": "default", "name": "test-run", "uid": "0000-test"},
        "round": round_,
        "newSlices": [sources[-1]["sliceId"]],
        "replay": "Sequential" if len(sources) == 1 else "CumulativeAll",
        "model": {"architecture": arch, "initCheckpoint": init},
        "data": {"sources": sources, "samples": samples},
        "optimizer": {"lr": lr, "weightDecay": 0.1, "warmupSteps": warmup, "batchSize": batch, "precision": "amp_bf16"},
        "output": {"uri": f"s3://{bucket}/{out.strip('/')}/"},
        "checkpointIntervalMinutes": interval,
        "seed": seed,
        "s3": {
            "region": os.environ.get("AWS_REGION", "us-east-1"),
            "endpoint": endpoint if endpoint is not None else os.environ["S3_ENDPOINT"],
        },
    }


def write_plan(tmp_path, plan: dict, name: str = "plan.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(plan))
    return str(p)


def train_in_process(plan_path: str) -> int:
    from ticclip_trainer.cli import main

    return main(["train", "--plan", plan_path])


def train_subprocess(plan_path: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "ticclip_trainer", "train", "--plan", plan_path], env=env, **kw)


def get_json(s3, uri: str) -> dict:
    return json.loads(s3.get_bytes(uri))
