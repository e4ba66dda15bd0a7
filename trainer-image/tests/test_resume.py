"""Preemption: SIGTERM and SIGKILL mid-round, then a re-run resumes and sees exactly the budget."""
import signal
import time

import pytest

from helpers import get_json, make_plan, source, train_in_process, train_subprocess, write_plan

BUDGET = 640


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_kill_and_resume(s3, bucket, slices, tmp_path, sig):
    out = f"runs/resume-{sig.name.lower()}/rounds/0000"
    plan = make_plan(bucket, out, [source(bucket, "2016", slices["2016"], weight=3, share=0.75),
                                   source(bucket, "2017", slices["2017"], weight=1, share=0.25)],
                     BUDGET, batch=32, interval=0.005)  # checkpoint every 0.3 s
    path = write_plan(tmp_path, plan)
    uri = plan["output"]["uri"]
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
    if sig == signal.SIGTERM:
        assert rc == 143, rc  # checkpointed and exited as preempted: transient, the Job retries
    else:
        assert rc == -9
    assert not s3.exists(uri + "_SUCCESS")
    assert s3.exists(uri + "partial/latest.pt")

    assert train_in_process(path) == 0
    summary = get_json(s3, uri + "train_summary.json")
    assert summary["samplesSeen"] == BUDGET
    assert sum(summary["samplesPerSource"].values()) == BUDGET
    assert summary["steps"] == BUDGET // 32
    assert len(summary["resumes"]) >= 1 and 0 < summary["resumes"][-1]["step"] < summary["steps"]
    assert summary["resumes"][-1]["samplesSeen"] == summary["resumes"][-1]["step"] * 32
    assert summary["lossCurve"][0]["step"] == 1  # the loss curve spans the killed run and the resumed one
    assert not s3.exists(uri + "partial/latest.pt")
