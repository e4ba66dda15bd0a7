"""progress.json (issue 26): rank 0 reports phase, samples, rates and loss while a round trains."""

import json

import pytest
import torch
from helpers import get_json, make_plan, source, train_in_process, write_plan

from ticclip_trainer.progress import HISTORY_POINTS, Progress
from ticclip_trainer.s3io import S3


def _recorder():
    docs = []
    return docs, lambda uri, body: docs.append((uri, json.loads(body)))


def test_progress_reports_phase_changes_at_once_and_steps_at_most_once_per_interval():
    docs, put = _recorder()
    p = Progress(put, "s3://b/r/progress.json", 100, 10, interval_s=3600)
    p.phase("loading")
    p.phase("training")
    for _ in range(10):
        p.step(10, 0.0, torch.tensor(2.0), 1e-3)
    p.phase("exporting")
    p.flush()
    assert [d["phase"] for _, d in docs] == ["loading", "training", "exporting"]
    last = docs[-1][1]
    assert (last["samplesDone"], last["samplesTotal"], last["steps"], last["stepsTotal"]) == (100, 100, 10, 10)
    assert last["loss"] == pytest.approx(2.0) and last["lr"] == 1e-3
    assert last["samplesPerSecond"] > 0 and 0 <= last["dataWaitShare"] <= 1
    assert all(uri == "s3://b/r/progress.json" for uri, _ in docs)


def test_progress_with_no_interval_reports_every_step_and_keeps_a_bounded_history():
    docs, put = _recorder()
    p = Progress(put, "u", 10 * HISTORY_POINTS, HISTORY_POINTS * 3, interval_s=0)
    p.phase("training")
    for i in range(HISTORY_POINTS * 3):
        p.step(1, 0.0, torch.tensor(float(i)), 1e-3, None)
        p.flush()
    assert len(docs) == 1 + HISTORY_POINTS * 3
    assert [d["samplesDone"] for _, d in docs[1:]] == list(range(1, HISTORY_POINTS * 3 + 1))
    assert 0 < len(p.history) <= HISTORY_POINTS
    assert [h["samplesDone"] for h in p.history] == sorted(h["samplesDone"] for h in p.history)


def test_progress_of_other_ranks_writes_nothing():
    p = Progress(None, "u", 10, 1, interval_s=0)
    p.phase("training")
    p.step(10, 0.0, torch.tensor(1.0), 1e-3)
    assert not p.enabled and p.history == []


def test_a_failed_progress_write_does_not_fail_the_round():
    def put(uri, body):
        raise OSError("S3 down")

    p = Progress(put, "u", 10, 1, interval_s=0)
    p.phase("training")
    p.step(10, 0.0, torch.tensor(1.0), 1e-3)
    p.flush()


def test_round_writes_progress_and_its_history(s3, bucket, slices, tmp_path, monkeypatch):
    plan = make_plan(bucket, "runs/progress/rounds/0000", [source(bucket, "2016", slices["2016"])], 320, batch=32)
    written = []
    put_bytes = S3.put_bytes

    def recording(self, uri, data, content_type="application/octet-stream"):
        if uri.endswith("progress.json"):
            written.append(json.loads(data))
        return put_bytes(self, uri, data, content_type)

    monkeypatch.setattr(S3, "put_bytes", recording)
    monkeypatch.setenv("TICCLIP_PROGRESS_SECONDS", "0")
    assert train_in_process(write_plan(tmp_path, plan)) == 0
    phases = [d["phase"] for d in written]
    assert phases[0] == "loading" and phases[-1] == "exporting"
    assert {"training", "checkpointing"} <= set(phases)
    done = [d["samplesDone"] for d in written]
    assert done == sorted(done) and done[-1] == 320 == written[-1]["samplesTotal"]
    assert written[-1]["skippedSamples"] == {"total": 0, "byReason": {}}
    stored = get_json(s3, plan["output"]["uri"] + "progress.json")
    assert stored == written[-1]
    history = get_json(s3, plan["output"]["uri"] + "train_summary.json")["progressHistory"]
    assert [h["samplesDone"] for h in history] == list(range(32, 321, 32))
    assert all(h["samplesPerSecond"] > 0 and h["loss"] > 0 for h in history)


def test_progress_can_be_turned_off(s3, bucket, slices, tmp_path, monkeypatch):
    plan = make_plan(bucket, "runs/progress-off/rounds/0000", [source(bucket, "2016", slices["2016"])], 64, batch=32)
    monkeypatch.setenv("TICCLIP_PROGRESS", "0")
    assert train_in_process(write_plan(tmp_path, plan)) == 0
    assert not s3.exists(plan["output"]["uri"] + "progress.json")
    assert get_json(s3, plan["output"]["uri"] + "train_summary.json")["progressHistory"] == []


def test_a_phase_change_after_replaced_reports_does_not_wait_forever():
    """Reports replaced before the writer took them (a slow PUT) must not leave flush() waiting for them."""
    import threading
    import time

    def slow_put(uri, body):
        time.sleep(0.05)

    p = Progress(slow_put, "u", 1000, 100, interval_s=0)
    p.phase("training")
    for _ in range(20):
        p.step(10, 0.0, torch.tensor(1.0), 1e-3)  # faster than the writer: most reports are replaced
    done = threading.Thread(target=p.phase, args=("checkpointing",), daemon=True)
    done.start()
    done.join(timeout=30)
    assert not done.is_alive(), "phase() hung waiting for reports that were replaced"
