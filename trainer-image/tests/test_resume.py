"""Preemption and failures mid-round with several loader workers: a re-run resumes and sees exactly
the samples an uninterrupted round sees (same data digests), and exactly the budget."""

import signal
import time

import pytest
from helpers import get_json, make_plan, source, train_in_process, train_subprocess, write_plan

from ticclip_trainer import export

BUDGET = 650  # 20 steps of 32 and a last one of 10


def _plan(bucket, slices, out):
    return make_plan(
        bucket,
        out,
        [
            source(bucket, "2016", slices["2016"], weight=3, share=0.75),
            source(bucket, "2017", slices["2017"], weight=1, share=0.25),
        ],
        BUDGET,
        batch=32,
        interval=0.005,
    )  # checkpoint every 0.3 s


@pytest.fixture(scope="module")
def reference(s3, bucket, slices, tmp_path_factory):
    """The same round, uninterrupted, with the same 3 streams."""
    plan = _plan(bucket, slices, "runs/resume-reference/rounds/0000")
    plan["checkpointIntervalMinutes"] = 60
    mp = pytest.MonkeyPatch()
    mp.setenv("TICCLIP_DATA_WORKERS", "3")
    try:
        assert train_in_process(write_plan(tmp_path_factory.mktemp("ref"), plan)) == 0
    finally:
        mp.undo()
    return get_json(s3, plan["output"]["uri"] + "train_summary.json")


def _same_samples(summary, reference):
    assert summary["samplesSeen"] == BUDGET == sum(summary["samplesPerSource"].values())
    assert summary["steps"] == 21
    assert summary["samplesPerSource"] == reference["samplesPerSource"]
    assert summary["dataDigests"] == reference["dataDigests"]
    assert summary["config"]["streams"] == {"streams": 3, "openShards": 8, "shuffleWindow": 2048}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_kill_and_resume_sees_the_same_samples(s3, bucket, slices, reference, tmp_path, monkeypatch, sig):
    plan = _plan(bucket, slices, f"runs/resume-{sig.name.lower()}/rounds/0000")
    path = write_plan(tmp_path, plan)
    uri = plan["output"]["uri"]
    monkeypatch.setenv("TICCLIP_DATA_WORKERS", "3")
    proc = train_subprocess(path)
    try:
        deadline = time.time() + 300
        while not s3.exists(uri + "partial/latest.pt"):
            assert proc.poll() is None, f"trainer exited early with {proc.returncode}"
            assert time.time() < deadline, "no intra-round checkpoint appeared"
            time.sleep(0.2)
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == (143 if sig == signal.SIGTERM else -9), rc  # 143: checkpointed, preempted: the Job retries
    assert not s3.exists(uri + "_SUCCESS")
    assert s3.exists(uri + "partial/latest.pt")

    monkeypatch.setenv("TICCLIP_DATA_WORKERS", "1")  # the streams come from the checkpoint, not this
    assert train_in_process(path) == 0
    summary = get_json(s3, uri + "train_summary.json")
    _same_samples(summary, reference)
    assert len(summary["resumes"]) >= 1 and 0 < summary["resumes"][-1]["step"] < summary["steps"]
    assert summary["resumes"][-1]["samplesSeen"] == summary["resumes"][-1]["step"] * 32
    assert summary["lossCurve"][0]["step"] == 1  # the loss curve spans the killed run and the resumed one
    assert not s3.exists(uri + "partial/latest.pt")


def test_failed_export_resumes_at_export_without_retraining(s3, bucket, slices, reference, tmp_path, monkeypatch):
    plan = _plan(bucket, slices, "runs/resume-export/rounds/0000")
    plan["checkpointIntervalMinutes"] = 60
    path = write_plan(tmp_path, plan)
    uri = plan["output"]["uri"]
    monkeypatch.setenv("TICCLIP_DATA_WORKERS", "3")

    def broken(*_a, **_k):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(export, "export_onnx", broken)
        assert train_in_process(path) == 75
    assert s3.exists(uri + "partial/latest.pt") and not s3.exists(uri + "_SUCCESS")
    assert train_in_process(path) == 0
    summary = get_json(s3, uri + "train_summary.json")
    _same_samples(summary, reference)
    assert summary["resumes"][-1]["step"] == summary["steps"]  # straight to export
    assert summary["throughput"]["stepsThisProcess"] == 0
