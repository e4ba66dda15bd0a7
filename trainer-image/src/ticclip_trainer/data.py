"""Streaming WebDataset shards from S3, mixed by the plan's source weights, resumable.

Semantics follow open_clip's `--train-data a::b --train-data-upsampling-factors --dataset-resampled`:
shards are drawn with replacement, each shard with probability proportional to its source's
weight (so a source's share is proportional to weight x its shard count). Draw k is chosen by an
RNG seeded with (seed, rank, k), and samples inside a draw are shuffled with a buffer seeded the
same way, so the whole stream is a pure function of (seed, rank) and its position is just
(draw index, samples consumed from that draw): that pair is the data RNG state saved in the
intra-round checkpoint, and resuming re-reads the current shard and skips what was consumed.
"""
from __future__ import annotations

import queue
import random
import tarfile
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .errors import PermanentError, TrainerError, TransientError
from .preprocess import Preprocessing
from .s3io import S3

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
SHUFFLE_BUFFER = 256


@dataclass
class Shard:
    source: int
    uri: str
    samples: int
    field: str  # plan field path, for error messages


@dataclass
class StreamState:
    draw: int = 0  # index of the shard draw in progress
    offset: int = 0  # samples of that draw already consumed

    def to_json(self) -> dict:
        return {"draw": self.draw, "offset": self.offset}


def shards_from_plan(plan: dict) -> tuple[list[str], list[Shard], list[float]]:
    slice_ids, shards, weights = [], [], []
    for i, src in enumerate(plan["data"]["sources"]):
        slice_ids.append(src["sliceId"])
        for j, sh in enumerate(src["shards"]):
            shards.append(Shard(i, sh["uri"], sh["samples"], f"data.sources[{i}].shards[{j}].uri"))
            weights.append(float(src["weight"]))
    return slice_ids, shards, weights


def iter_tar(stream, uri: str, field: str) -> Iterator[tuple[str, bytes, str]]:
    """(key, image bytes, caption) per sample of a WebDataset tar read as a stream."""
    def sample(key, parts):
        img = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        if img is None or "txt" not in parts:
            raise PermanentError(f"corrupt shard {uri}: sample {key!r} lacks an image or a .txt caption "
                                 f"(has {sorted(parts)})", field)
        return key, img, parts["txt"].decode("utf-8").strip()

    key, parts = None, {}
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                base = m.name.rsplit("/", 1)[-1]
                k, _, ext = base.partition(".")
                prefix = m.name[: len(m.name) - len(base)] + k
                data = tar.extractfile(m).read()
                if prefix != key:
                    if key is not None:
                        yield sample(key, parts)
                    key, parts = prefix, {}
                parts[ext.lower()] = data
    except (tarfile.TarError, EOFError, UnicodeDecodeError, ValueError) as e:
        raise PermanentError(f"corrupt shard {uri}: {e}", field) from e
    except TrainerError:
        raise
    except OSError as e:
        raise TransientError(f"reading {uri}: {e}") from e
    if key is not None:
        yield sample(key, parts)
    else:
        raise PermanentError(f"corrupt shard {uri}: no samples", field)


class MixedStream:
    """Infinite stream of (source index, image bytes, caption) with a resumable position."""

    def __init__(self, s3: S3, shards: list[Shard], weights: list[float], seed: int, rank: int = 0):
        self.s3, self.shards, self.weights, self.seed, self.rank = s3, shards, weights, seed, rank

    def check_shards_exist(self) -> None:
        for sh in self.shards:
            if not self.s3.exists(sh.uri):
                raise PermanentError(f"shard {sh.uri} does not exist", sh.field)

    def draw(self, k: int) -> Shard:
        rng = random.Random(f"{self.seed}:{self.rank}:{k}")
        return rng.choices(self.shards, weights=self.weights, k=1)[0]

    def _shuffled(self, k: int, items: Iterator) -> Iterator:
        rng = random.Random(f"{self.seed}:{self.rank}:{k}:shuffle")
        buf: list = []
        for it in items:
            buf.append(it)
            if len(buf) >= SHUFFLE_BUFFER:
                i = rng.randrange(len(buf))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def iterate(self, state: StreamState) -> Iterator[tuple[int, bytes, str, StreamState]]:
        """Yields samples and the stream state *after* each one; starts at `state`."""
        draw, skip = state.draw, state.offset
        while True:
            sh = self.draw(draw)
            body = self.s3.open(sh.uri, field=sh.field)
            try:
                n = 0
                for _key, img, txt in self._shuffled(draw, iter_tar(body, sh.uri, sh.field)):
                    n += 1
                    if n <= skip:
                        continue
                    yield sh.source, img, txt, StreamState(draw, n)
            finally:
                body.close()
            draw, skip = draw + 1, 0


@dataclass
class Batch:
    images: np.ndarray
    tokens: np.ndarray
    sources: list[int]
    state: StreamState  # stream position after this batch
    decode_s: float = 0.0


@dataclass
class BatchLoader:
    """Decodes batches in a background thread (bounded queue) so decoding overlaps compute.

    `sizes` is the list of batch sizes still to produce; the loader stops after the last one.
    """
    stream: MixedStream
    prep: Preprocessing
    state: StreamState
    sizes: list[int]
    prefetch: int = 4
    _q: queue.Queue = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)

    def __iter__(self) -> Iterator[Batch]:
        self._q = queue.Queue(maxsize=self.prefetch)
        t = threading.Thread(target=self._run, daemon=True)
        t.start()
        try:
            for _ in self.sizes:
                item = self._q.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()

    def _run(self) -> None:
        import time
        try:
            it = self.stream.iterate(self.state)
            for size in self.sizes:
                t0 = time.perf_counter()
                imgs, txts, srcs, st = [], [], [], None
                for _ in range(size):
                    src, img, txt, st = next(it)
                    try:
                        imgs.append(self.prep.image_bytes_to_array(img))
                    except Exception as e:  # PIL raises many types on bad bytes
                        raise PermanentError(f"corrupt image in shard {self.stream.draw(st.draw).uri}: {e}",
                                             self.stream.draw(st.draw).field) from e
                    txts.append(txt)
                    srcs.append(src)
                b = Batch(np.stack(imgs), self.prep.tokenize(txts), srcs, st, time.perf_counter() - t0)
                while not self._stop.is_set():
                    try:
                        self._q.put(b, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # forwarded to the consumer
            self._q.put(e)
