"""progress.json: what a round is doing while it trains, for the operator's status (issue 26).

Rank 0 writes `<output>/progress.json` at most every `interval_s` seconds and at each phase change
(loading, training, checkpointing, exporting); its schema is `operator/api/round-documents.ts`
(`trainerProgress`). The training loop pays for a report with host-side arithmetic only: samples and
times are counted on the host, the loss is summed on the device without a sync, and the one
`.item()` (a device sync) and the S3 PUT happen once per interval, the PUT on a writer thread. The
points written are kept (decimated to at most HISTORY_POINTS) for train_summary.json's
`progressHistory`, the report's throughput and loss curves.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
import time

log = logging.getLogger("ticclip_trainer")

PHASES = ("loading", "training", "checkpointing", "exporting")
DEFAULT_INTERVAL_S = 30.0
WINDOW_S = 300.0  # samples/s and data-wait share over the last 5 minutes of steps
HISTORY_POINTS = 500  # train_summary.json keeps at most this many points (every other dropped when full)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Progress:
    """Reports one round's progress. `put(uri, bytes)` stores a document; None (ranks > 0) reports nothing."""

    def __init__(self, put, uri: str, samples_total: int, steps_total: int, interval_s: float):
        self.put, self.uri = put, uri
        self.samples_total, self.steps_total, self.interval_s = samples_total, steps_total, interval_s
        self.history: list[dict] = []
        self.phase_name = "loading"
        self.samples_done, self.steps_done = 0, 0
        self.lr: float | None = None
        self.skipped: dict = {}
        self.peak_memory: int | None = None
        self.loss_ema: float | None = None
        self._loss_sum = None  # device tensor: summed without a sync, read once per report
        self._loss_n = 0
        self._window: collections.deque = collections.deque()  # (t, samples, data_wait_s, step_s)
        self._last_write = 0.0
        self._step_end = time.monotonic()
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.put is not None

    def phase(self, name: str) -> None:
        """A phase change is reported at once (and waited for: the operator sees each phase)."""
        assert name in PHASES, name
        self.phase_name = name
        self._step_end = time.monotonic()  # a checkpoint's time is no step's time
        self._report(self._step_end)
        self.flush()

    def resumed(self, steps_done: int, samples_done: int, history: list | None) -> None:
        """A round resumed from its intra-round checkpoint: counts and curve go on from there."""
        self.steps_done, self.samples_done = steps_done, samples_done
        self.history = list(history or [])

    def step(self, samples: int, data_wait_s: float, loss, lr: float, skipped=None) -> None:
        """After each optimizer step: host-side bookkeeping; a report when the interval has passed."""
        if self.put is None:
            return
        now = time.monotonic()
        step_s, self._step_end = now - self._step_end, now
        self.steps_done += 1
        self.samples_done += samples
        self.lr = lr
        self._loss_sum = loss.detach() if self._loss_sum is None else self._loss_sum + loss.detach()
        self._loss_n += 1
        self._window.append((now, samples, data_wait_s, step_s))
        while self._window and now - self._window[0][0] > WINDOW_S:
            self._window.popleft()
        if now - self._last_write >= self.interval_s:
            self.skipped = dict(skipped.by_reason) if skipped is not None else {}
            self._report(now)

    def _rates(self) -> tuple[float | None, float | None]:
        if not self._window:
            return None, None
        busy = sum(w[3] for w in self._window)
        wait = sum(w[2] for w in self._window)
        samples = sum(w[1] for w in self._window)
        return (samples / busy if busy > 0 else None), (min(1.0, wait / busy) if busy > 0 else None)

    def _report(self, now: float) -> None:
        if self.put is None:
            return
        if self._loss_n:
            mean = float(self._loss_sum.item()) / self._loss_n  # the one device sync per report
            self.loss_ema = mean if self.loss_ema is None else 0.5 * self.loss_ema + 0.5 * mean
            self._loss_sum, self._loss_n = None, 0
        try:
            import torch

            if torch.cuda.is_available():
                self.peak_memory = int(torch.cuda.max_memory_allocated())
        except Exception:  # noqa: BLE001 - memory is a nicety, never a reason to fail a round
            pass
        rate, wait = self._rates()
        doc = {
            "schemaVersion": 1,
            "phase": self.phase_name,
            "samplesDone": self.samples_done,
            "samplesTotal": self.samples_total,
            "steps": self.steps_done,
            "stepsTotal": self.steps_total,
            "samplesPerSecond": rate,
            "dataWaitShare": wait,
            "loss": self.loss_ema,
            "lr": self.lr,
            "peakMemoryBytes": self.peak_memory,
            "skippedSamples": {"total": sum(self.skipped.values()), "byReason": dict(self.skipped)},
            "updatedAt": utc_now(),
        }
        self._last_write = now
        if self.phase_name == "training" and self.steps_done:
            self._remember(doc)
        self._start()
        try:  # the newest report replaces one not yet written: the writer never falls behind
            self._queue.get_nowait()
            self._queue.task_done()  # the replaced one counts as done, or flush() would wait for it forever
        except queue.Empty:
            pass
        self._queue.put_nowait(json.dumps(doc).encode())

    def _remember(self, doc: dict) -> None:
        point = {k: doc[k] for k in ("samplesDone", "steps", "samplesPerSecond", "dataWaitShare", "loss", "lr")}
        self.history.append({"at": doc["updatedAt"], **point})
        if len(self.history) > HISTORY_POINTS:
            self.history = self.history[::2]

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_loop, name="progress-writer", daemon=True)
            self._thread.start()

    def _write_loop(self) -> None:
        while True:
            body = self._queue.get()
            try:
                self.put(self.uri, body)
            except Exception as e:  # noqa: BLE001 - a lost report is replaced by the next one
                log.warning("progress.json not written: %s", e)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Waits until the newest report is stored."""
        if self._thread is not None:
            self._queue.join()
