"""The round's data path: WebDataset shards streamed from S3, mixed by the plan's weights, decoded in
loader worker processes, resumable exactly.

Semantics follow open_clip's `--train-data a::b --train-data-upsampling-factors --dataset-resampled`:
shards are drawn with replacement, each with probability proportional to its source's weight (so a
source's share is proportional to weight x its shard count x shard size).

Streams. Each rank has `streams` independent sample streams, one per loader worker; step i of the
round is built by stream i % streams, so the batch order does not depend on which worker is fast.
A stream is a pure function of (seed, rank, stream): draw k picks its shard with an RNG seeded by
(seed, rank, stream, k). `open_shards` drawn shards are read at once (slots); window j takes
`shuffle_window` samples, each from a slot chosen by an RNG seeded by (seed, rank, stream, j), and
emits them in an order shuffled by the same RNG. A slot whose shard ends takes the next draw. Batches
thus mix several shards (slices) and are shuffled across shard boundaries, as open_clip's buffers do,
while memory stays bounded (one window of encoded samples per worker).

Position. A stream's position is (window, slots' (draw, sample, byte offset), next draw, samples of
the window consumed): a few integers per stream, saved in the intra-round checkpoint. Resuming
reopens each slot at its byte offset (Range GET) and rebuilds the current window, so a resumed round
sees exactly the samples the uninterrupted round would have seen.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .errors import PermanentError, TrainerError, TransientError
from .preprocess import Preprocessing
from .s3io import S3, S3Settings

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)


@dataclass
class Shard:
    source: int
    uri: str
    samples: int
    field: str  # plan field path, for error messages


def shards_from_plan(plan: dict) -> tuple[list[str], list[Shard], list[float]]:
    slice_ids, shards, weights = [], [], []
    for i, src in enumerate(plan["data"]["sources"]):
        slice_ids.append(src["sliceId"])
        for j, sh in enumerate(src["shards"]):
            shards.append(Shard(i, sh["uri"], sh["samples"], f"data.sources[{i}].shards[{j}].uri"))
            weights.append(float(src["weight"]))
    return slice_ids, shards, weights


# ---- tar: WebDataset samples with byte offsets ----


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for sizes >= 8 GiB
        return int.from_bytes(field[1:], "big")
    s = field.rstrip(b"\0 ").strip()
    return int(s, 8) if s else 0


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset grouping: 'dir/key.ext.ext2' -> ('dir/key', 'ext.ext2')."""
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return name[: len(name) - len(base)] + key, ext.lower()


class TarSamples:
    """Samples of one tar read as a stream that starts at byte `start` (0 or a sample's first header).

    `next()` returns (key, {ext: bytes}) or None at the end; `offset` is the byte where the next
    sample starts, the point a reader can be reopened at.
    """

    def __init__(self, f, uri: str, field: str, start: int = 0):
        self.f, self.uri, self.field = f, uri, field
        self.pos = start
        self._member = self._read_member()

    def _corrupt(self, why: str) -> PermanentError:
        return PermanentError(f"corrupt shard {self.uri}: {why} (at byte {self.pos})", self.field)

    def _read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.pos += len(data)
        return data

    def _read_member(self):
        """(name, data, start byte) of the next regular file, or None at the end of the archive."""
        start, longname = self.pos, None
        while True:
            hdr = self._read(BLOCK)
            if not hdr or hdr == _ZERO_BLOCK:
                return None
            if len(hdr) < BLOCK:
                raise self._corrupt("truncated header")
            try:
                chk = _octal(hdr[148:156])
                size = _octal(hdr[124:136])
            except ValueError:
                raise self._corrupt("not a tar header") from None
            if chk != sum(hdr[:148]) + 256 + sum(hdr[156:]):
                raise self._corrupt("bad header checksum, not a tar file")
            data = self._read(size)
            if len(data) < size or len(self._read(-size % BLOCK)) < -size % BLOCK:
                raise self._corrupt("truncated member")
            typ = hdr[156:157]
            if typ == b"L":  # GNU long name of the next member
                longname = data.rstrip(b"\0").decode("utf-8", "replace")
            elif typ == b"x":  # pax extended header: only the path matters here
                for rec in data.split(b"\n"):
                    k, _, v = rec.partition(b" ")[2].partition(b"=")
                    if k == b"path":
                        longname = v.decode("utf-8", "replace")
            elif typ in (b"0", b"\0", b"7"):
                name = longname
                if name is None:
                    name = hdr[:100].rstrip(b"\0").decode("utf-8", "replace")
                    prefix = hdr[345:500].rstrip(b"\0")
                    if hdr[257:262] == b"ustar" and prefix:
                        name = prefix.decode("utf-8", "replace") + "/" + name
                return name, data, start
            elif typ != b"g":  # directories, links, ...: not part of a sample
                start, longname = self.pos, None

    @property
    def offset(self) -> int:
        return self._member[2] if self._member else self.pos

    @property
    def exhausted(self) -> bool:
        return self._member is None

    def next(self) -> tuple[str, dict] | None:
        if self._member is None:
            return None
        key, ext = _split_name(self._member[0])
        parts = {ext: self._member[1]}
        while True:
            self._member = self._read_member()
            if self._member is None:
                break
            k, ext = _split_name(self._member[0])
            if k != key:
                break
            parts[ext] = self._member[1]
        return key, parts


def sample_fields(parts: dict, key: str, uri: str, field: str) -> tuple[bytes, str]:
    img = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
    if img is None or "txt" not in parts:
        raise PermanentError(
            f"corrupt shard {uri}: sample {key!r} lacks an image or a .txt caption (has {sorted(parts)})", field
        )
    try:
        return img, parts["txt"].decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise PermanentError(f"corrupt shard {uri}: caption of {key!r} is not UTF-8: {e}", field) from e


def iter_tar(stream, uri: str, field: str) -> Iterator[tuple[str, bytes, str]]:
    """(key, image bytes, caption) per sample of a whole WebDataset tar read as a stream."""
    try:
        tar = TarSamples(stream, uri, field)
        if tar.exhausted:
            raise PermanentError(f"corrupt shard {uri}: no samples", field)
        while (s := tar.next()) is not None:
            yield (s[0], *sample_fields(s[1], s[0], uri, field))
    except TrainerError:
        raise
    except OSError as e:
        raise TransientError(f"reading {uri}: {e}") from e


# ---- streams ----


@dataclass(frozen=True)
class StreamState:
    window: int  # index of the window in progress
    slots: tuple  # per slot: (draw, samples of that draw read, byte offset of the next sample)
    next_draw: int
    offset: int = 0  # samples of the window already consumed

    def to_json(self) -> dict:
        return {
            "window": self.window,
            "slots": [list(s) for s in self.slots],
            "nextDraw": self.next_draw,
            "offset": self.offset,
        }

    @staticmethod
    def from_json(d: dict) -> StreamState:
        return StreamState(d["window"], tuple(tuple(s) for s in d["slots"]), d["nextDraw"], d["offset"])

    @staticmethod
    def initial(open_shards: int) -> StreamState:
        return StreamState(0, tuple((k, 0, 0) for k in range(open_shards)), open_shards)


@dataclass(frozen=True)
class StreamConfig:
    """What defines the streams (besides the plan): saved in the intra-round checkpoint and reused."""

    streams: int
    open_shards: int
    shuffle_window: int

    def to_json(self) -> dict:
        return {"streams": self.streams, "openShards": self.open_shards, "shuffleWindow": self.shuffle_window}

    @staticmethod
    def from_json(d: dict) -> StreamConfig:
        return StreamConfig(d["streams"], d["openShards"], d["shuffleWindow"])


class _ShardOpener:
    """Opens shard streams; the next `prefetch` draws are opened (GET sent, first buffer read) in
    background threads so a slot that finishes its shard does not wait for S3's first byte."""

    def __init__(self, s3: S3, shards: list[Shard], draw, prefetch: int, retries: int):
        self.s3, self.shards, self.draw, self.prefetch, self.retries = s3, shards, draw, prefetch, retries
        self.pool = ThreadPoolExecutor(max_workers=prefetch) if prefetch else None
        self.ahead: dict[int, Future] = {}

    def _open(self, k: int, start: int):
        sh = self.shards[self.draw(k)]
        f = self.s3.open_stream(sh.uri, sh.field, start=start, retries=self.retries)
        f.peek(1)
        return f

    def open(self, k: int, start: int, next_draw: int):
        fut = self.ahead.pop(k, None) if start == 0 else None
        f = fut.result() if fut is not None else self._open(k, start)
        if self.pool is not None:  # draws are taken in order, each once: `ahead` never holds stale ones
            for d in range(next_draw, next_draw + self.prefetch):
                if d not in self.ahead:
                    self.ahead[d] = self.pool.submit(self._open, d, 0)
        return f

    @staticmethod
    def _discard(fut: Future) -> None:
        try:
            fut.result().close()
        except Exception:  # noqa: BLE001  an unused prefetch that failed does not matter
            pass

    def close(self) -> None:
        for fut in self.ahead.values():
            self._discard(fut)
        self.ahead.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


class SampleStream:
    """One (seed, rank, stream) sample stream: infinite, deterministic, resumable (see module doc)."""

    def __init__(
        self,
        s3: S3,
        shards: list[Shard],
        weights: list[float],
        seed: int,
        rank: int,
        stream: int,
        cfg: StreamConfig,
        prefetch: int = 2,
        retries: int = 8,
    ):
        self.s3, self.shards, self.weights, self.cfg = s3, shards, weights, cfg
        self.seed, self.rank, self.stream = seed, rank, stream
        self.prefetch, self.retries = prefetch, retries
        self._cum = np.cumsum(np.asarray(weights, dtype=np.float64))

    def draw(self, k: int) -> int:
        """Index of the shard of draw k."""
        u = random.Random(f"{self.seed}:{self.rank}:{self.stream}:draw:{k}").random()
        return int(min(np.searchsorted(self._cum, u * self._cum[-1], side="right"), len(self.shards) - 1))

    def initial_state(self) -> StreamState:
        return StreamState.initial(self.cfg.open_shards)

    def samples(self, state: StreamState) -> Iterator[tuple[int, str, bytes, str, StreamState]]:
        """Yields (source, sample id, image bytes, caption, position after this sample) from `state` on."""
        k, w = self.cfg.open_shards, self.cfg.shuffle_window
        window, slots, next_draw, skip = state.window, [list(s) for s in state.slots], state.next_draw, state.offset
        opener = _ShardOpener(self.s3, self.shards, self.draw, self.prefetch, self.retries)
        readers: list[TarSamples | None] = [None] * k
        try:
            while True:
                start = StreamState(window, tuple(map(tuple, slots)), next_draw)
                rng = random.Random(f"{self.seed}:{self.rank}:{self.stream}:window:{window}")
                items = []
                for _ in range(w):
                    s = rng.randrange(k)
                    draw, n, byte = slots[s]
                    sh = self.shards[self.draw(draw)]
                    if readers[s] is None:
                        readers[s] = TarSamples(opener.open(draw, byte, next_draw), sh.uri, sh.field, byte)
                        if readers[s].exhausted:
                            raise PermanentError(
                                f"corrupt shard {sh.uri}: no samples"
                                if byte == 0
                                else f"shard {sh.uri} ends before byte {byte}",
                                sh.field,
                            )
                    r = readers[s]
                    key, parts = r.next()
                    img, txt = sample_fields(parts, key, sh.uri, sh.field)
                    items.append((sh.source, f"{sh.uri}#{key}", img, txt))
                    slots[s] = [draw, n + 1, r.offset]
                    if r.exhausted:
                        r.f.close()
                        readers[s] = None
                        slots[s] = [next_draw, 0, 0]
                        next_draw += 1
                rng.shuffle(items)
                end = StreamState(window + 1, tuple(map(tuple, slots)), next_draw)
                for i in range(skip, w):
                    pos = end if i + 1 == w else StreamState(start.window, start.slots, start.next_draw, i + 1)
                    yield (*items[i], pos)
                window, skip = window + 1, 0
        finally:
            for r in readers:
                if r is not None:
                    r.f.close()
            opener.close()


# ---- batches for one rank, built in loader workers ----


class RoundBatches(IterableDataset):
    """The rank's remaining steps as ready batches: uint8 NHWC images, int64 tokens, per-source
    counts, the stream position after the batch and a digest of the sample ids.

    Under a DataLoader with `streams` workers, worker j builds steps start+j, start+j+streams, ...
    (all from stream (start+j) % streams); the DataLoader returns workers' batches round-robin, so
    steps arrive in order (train.py checks). Without workers, one process serves every stream.
    """

    def __init__(
        self,
        s3_settings: S3Settings,
        shards: list[Shard],
        weights: list[float],
        n_sources: int,
        prep: Preprocessing,
        seed: int,
        rank: int,
        sizes: list[int],
        start_step: int,
        states: list[StreamState],
        cfg: StreamConfig,
        prefetch: int = 2,
        retries: int = 8,
    ):
        super().__init__()
        self.s3_settings, self.shards, self.weights, self.n_sources = s3_settings, shards, weights, n_sources
        self.prep, self.seed, self.rank, self.sizes, self.start_step = prep, seed, rank, sizes, start_step
        self.states, self.cfg, self.prefetch, self.retries = states, cfg, prefetch, retries

    def __iter__(self):
        info = get_worker_info()
        n = self.cfg.streams
        if info is not None and info.num_workers != n:
            raise RuntimeError(f"RoundBatches needs {n} loader workers (one per stream), got {info.num_workers}")
        first = self.start_step + (info.id if info is not None else 0)
        stride = n if info is not None else 1
        s3 = S3(self.s3_settings)  # per process: boto3 clients must not cross a fork
        iters: dict[int, Iterator] = {}
        try:
            for step in range(first, len(self.sizes), stride):
                sid = step % n
                if sid not in iters:
                    stream = SampleStream(
                        s3, self.shards, self.weights, self.seed, self.rank, sid, self.cfg, self.prefetch, self.retries
                    )
                    iters[sid] = stream.samples(self.states[sid])
                yield self._batch(step, sid, iters[sid])
        except TrainerError as e:  # forwarded as a value: the DataLoader would re-raise it as text
            yield {"error": e}
        finally:
            for it in iters.values():
                it.close()

    def _batch(self, step: int, sid: int, it: Iterator) -> dict:
        t0 = time.perf_counter()
        size, s = self.sizes[step], self.prep.image_size
        images = np.empty((size, s, s, 3), dtype=np.uint8)
        captions, counts, h = [], [0] * self.n_sources, hashlib.sha256()
        pos = None
        for i in range(size):
            src, sample_id, img, txt, pos = next(it)
            try:
                images[i] = self.prep.image_bytes_to_uint8(img)
            except Exception as e:  # noqa: BLE001  PIL raises many types on bad bytes
                uri = sample_id.split("#", 1)[0]
                field = next(sh.field for sh in self.shards if sh.uri == uri)
                raise PermanentError(f"corrupt image {sample_id}: {e}", field) from e
            captions.append(txt)
            counts[src] += 1
            h.update(sample_id.encode() + b"\n")
        return {
            "step": step,
            "stream": sid,
            "images": torch.from_numpy(images),
            "tokens": torch.from_numpy(self.prep.tokenize(captions)),
            "counts": counts,
            "state": pos.to_json(),
            "digest": h.hexdigest(),
            "decodeSeconds": time.perf_counter() - t0,
        }


def make_loader(batches: RoundBatches, workers: int, pin_memory: bool) -> DataLoader:
    """`workers` is 0 (decode in this process) or the number of streams. Two batches in flight per
    worker: a worker needs `workers` steps to build one, so two cover its jitter, and each costs
    /dev/shm (38 MB at ViT-B's 224 px x 256)."""
    return DataLoader(
        batches,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
