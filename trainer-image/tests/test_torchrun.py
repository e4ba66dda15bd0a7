"""Several processes under torchrun (2 CPU ranks, gloo): the global batch is split over the ranks, and
a permanent error in a rank is the pod's exit code 2, not torchrun's 1."""

import os
import socket
import subprocess

import pytest
from helpers import get_json, make_plan, source, train_subprocess, write_plan

from ticclip_trainer.cli import pod_exit_code


def _env(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {
        "NPROC_PER_NODE": "2",
        "NNODES": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TICCLIP_DATA_WORKERS": "1",
        "OMP_NUM_THREADS": "1",
    }.items():
        monkeypatch.setenv(k, v)


def _run(path) -> tuple[int, str]:
    proc = train_subprocess(path, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def test_torchrun_missing_shard_exits_2(s3, bucket, slices, tmp_path, monkeypatch):
    _env(monkeypatch)
    src = source(bucket, "2016", slices["2016"])
    src["shards"][1]["uri"] = f"s3://{bucket}/slices/2016/shard-09999.tar"
    plan = make_plan(bucket, "runs/torchrun-missing/rounds/0000", [src], 64)
    rc, err = _run(write_plan(tmp_path, plan))
    assert rc == 2, err[-3000:]
    assert "data.sources[0].shards[1].uri" in err
    assert not s3.exists(plan["output"]["uri"] + "_SUCCESS")


def test_torchrun_round_splits_the_global_batch(s3, bucket, slices, tmp_path, monkeypatch):
    _env(monkeypatch)
    plan = make_plan(
        bucket,
        "runs/torchrun-ok/rounds/0000",
        [source(bucket, "2016", slices["2016"]), source(bucket, "2017", slices["2017"])],
        200,
        batch=32,
    )
    rc, err = _run(write_plan(tmp_path, plan))
    assert rc == 0, err[-3000:]
    summary = get_json(s3, plan["output"]["uri"] + "train_summary.json")
    assert summary["worldSize"] == 2 and summary["config"]["perRankBatch"] == 16
    assert summary["samplesSeen"] == 200 == sum(summary["samplesPerSource"].values())
    assert summary["steps"] == 7  # 6 x 32 + 8: the global batch is 32, not 32 per rank
    assert len(set(summary["dataDigests"])) == 2


@pytest.mark.parametrize(
    "torchrun_rc,codes,want",
    [
        (0, [], 0),
        (1, [2], 2),
        (1, [143, 2], 2),
        (1, [143], 143),
        (1, [75, 143], 143),
        (1, [75], 75),
        (1, [], 1),
        (-9, [], -9),
    ],
)
def test_pod_exit_code_maps_the_ranks_codes(tmp_path, torchrun_rc, codes, want):
    for i, c in enumerate(codes):
        (tmp_path / f"rank-{i}.exit").write_text(str(c))
    (tmp_path / "rank-0.pid").write_text(str(os.getpid()))
    assert pod_exit_code(torchrun_rc, str(tmp_path)) == want
