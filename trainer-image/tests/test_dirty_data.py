"""Dirty web data: every kind of bad sample is skipped and counted by reason; the round fails (exit 2,
naming a shard and the reason) only past data.maxSkippedFraction; a killed round resumes across
skipped samples and sees exactly what an uninterrupted one sees."""

import io
import signal
import time

import pytest
import torch
from helpers import get_json, make_plan, train_in_process, train_subprocess, write_plan
from img2dataset import BAD, sample, shard_files

from ticclip_trainer.data import SKIP_REASONS

SHARD_SIZE = 100
BUDGET = 160  # 5 steps of 32: the stream passes over the shard's bad samples at least once
RESUME_BUDGET = 480  # 30 steps of 16, checkpointed every 0.3 s


def _shard(seed: int) -> list[dict]:
    """93 good samples (some with the caption only in .json) and one of each of the 7 bad kinds."""
    good = [sample(seed * 1000 + i, txt=i % 5 != 0) for i in range(SHARD_SIZE - len(BAD))]
    for j, make in enumerate(BAD.values()):
        good.insert(3 + j * 6, make(j))
    return good


@pytest.fixture(scope="module")
def dirty(s3, bucket):
    """One img2dataset shard with every bad kind, on MinIO: (source for a plan)."""
    files = shard_files(0, _shard(0))
    for name, data in files.items():
        s3.put_bytes(f"s3://{bucket}/dirty/{name}", data)
    return {
        "sliceId": "dirty",
        "weight": 1,
        "expectedShare": 1,
        "shards": [{"uri": f"s3://{bucket}/dirty/00000.tar", "samples": SHARD_SIZE - len(BAD)}],
    }


@pytest.fixture(autouse=True)
def _one_stream_one_slot(monkeypatch):
    # One open shard, short windows: the stream walks the shard in order, so every kind is met.
    monkeypatch.setenv("TICCLIP_OPEN_SHARDS", "1")
    monkeypatch.setenv("TICCLIP_SHUFFLE_WINDOW", "64")
    monkeypatch.setenv("TICCLIP_DATA_WORKERS", "2")


def _plan(bucket, src, out, fraction, budget=BUDGET, **kw):
    plan = make_plan(bucket, out, [src], budget, **kw)
    if fraction is not None:
        plan["data"]["maxSkippedFraction"] = fraction
    return plan


def test_every_bad_kind_is_skipped_and_counted_below_the_tolerance(s3, bucket, dirty, tmp_path):
    plan = _plan(bucket, dirty, "runs/dirty-ok/rounds/0000", 0.2)
    assert train_in_process(write_plan(tmp_path, plan)) == 0
    summary = get_json(s3, plan["output"]["uri"] + "train_summary.json")
    sk = summary["skippedSamples"]
    assert summary["samplesSeen"] == BUDGET == summary["samplesPerSource"]["dirty"]
    assert set(sk["byReason"]) == set(SKIP_REASONS), sk
    assert sk["total"] == sum(sk["byReason"].values()) <= sk["limit"] == 32
    assert sk["shards"] == [{"uri": dirty["shards"][0]["uri"], "skipped": sk["total"]}]
    assert "00000.tar#" in sk["examples"]["imageTooLarge"] and "more than the limit" in sk["examples"]["imageTooLarge"]
    assert "unknown pixel mode" in sk["examples"]["imageMode"]
    assert sk["maxSkippedFraction"] == 0.2


def test_over_the_tolerance_fails_naming_the_shard_and_reason(s3, bucket, dirty, tmp_path, capfd):
    for fraction, out in ((0.02, "dirty-over"), (None, "dirty-default")):  # None: the default 0.01
        plan = _plan(bucket, dirty, f"runs/{out}/rounds/0000", fraction)
        rc = train_in_process(write_plan(tmp_path, plan))
        err = capfd.readouterr().err
        assert rc == 2, err
        assert "data.sources[0].shards[0].uri" in err and "dirty/00000.tar" in err, err
        assert "samples skipped, more than data.maxSkippedFraction" in err
        assert any(r in err for r in SKIP_REASONS)
        assert not s3.exists(plan["output"]["uri"] + "_SUCCESS")


@pytest.fixture(scope="module")
def reference(s3, bucket, dirty, tmp_path_factory):
    plan = _plan(bucket, dirty, "runs/dirty-reference/rounds/0000", 0.2, RESUME_BUDGET, batch=16)
    mp = pytest.MonkeyPatch()
    for k, v in (("TICCLIP_OPEN_SHARDS", "1"), ("TICCLIP_SHUFFLE_WINDOW", "64"), ("TICCLIP_DATA_WORKERS", "2")):
        mp.setenv(k, v)
    try:
        assert train_in_process(write_plan(tmp_path_factory.mktemp("dirty-ref"), plan)) == 0
    finally:
        mp.undo()
    return get_json(s3, plan["output"]["uri"] + "train_summary.json")


def test_kill_and_resume_across_skipped_samples(s3, bucket, dirty, reference, tmp_path, monkeypatch):
    plan = _plan(bucket, dirty, "runs/dirty-resume/rounds/0000", 0.2, RESUME_BUDGET, batch=16, interval=0.005)
    path, uri = write_plan(tmp_path, plan), plan["output"]["uri"]
    proc = train_subprocess(path)
    partial = None  # an intra-round checkpoint taken after some samples were skipped
    try:
        deadline = time.time() + 300
        while partial is None:
            assert proc.poll() is None, f"trainer exited early with {proc.returncode}"
            assert time.time() < deadline, "no intra-round checkpoint with skipped samples appeared"
            if s3.exists(uri + "partial/latest.pt"):
                try:
                    ck = torch.load(io.BytesIO(s3.get_bytes(uri + "partial/latest.pt")), weights_only=False)
                except Exception:  # noqa: BLE001  read while being replaced
                    ck = None
                if ck and sum(ck["ranks"][0]["skipped"]["byReason"].values()) > 0:
                    partial = ck
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not s3.exists(uri + "_SUCCESS")
    ck = torch.load(io.BytesIO(s3.get_bytes(uri + "partial/latest.pt")), weights_only=False)
    assert 0 < ck["step"] < reference["steps"]

    monkeypatch.setenv("TICCLIP_DATA_WORKERS", "1")  # the streams come from the checkpoint
    assert train_in_process(path) == 0
    summary = get_json(s3, uri + "train_summary.json")
    assert summary["resumes"] and 0 < summary["resumes"][-1]["step"] < summary["steps"]
    assert summary["dataDigests"] == reference["dataDigests"]
    assert summary["samplesPerSource"] == reference["samplesPerSource"]
    assert summary["skippedSamples"] == reference["skippedSamples"]
    assert summary["skippedSamples"]["total"] >= sum(ck["ranks"][0]["skipped"]["byReason"].values()) > 0
