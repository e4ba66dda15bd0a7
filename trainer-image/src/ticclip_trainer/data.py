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
import io
import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .errors import PermanentError, TrainerError, TransientError
from .preprocess import MAX_IMAGE_PIXELS, Preprocessing
from .s3io import S3, S3Settings

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)


DEFAULT_MAX_SKIPPED_FRACTION = 0.01  # RoundPlan data.maxSkippedFraction when absent (older plans)
DEFAULT_JSON_CAPTION_FIELD = "caption"  # img2dataset's field


@dataclass
class Shard:
    source: int
    uri: str
    samples: int
    field: str  # plan field path, for error messages
    json_caption_field: str = DEFAULT_JSON_CAPTION_FIELD
    held_out_fraction: float = 0.0  # samples whose key hashes below it are the slice's eval pack


def shards_from_plan(plan: dict) -> tuple[list[str], list[Shard], list[float]]:
    slice_ids, shards, weights = [], [], []
    for i, src in enumerate(plan["data"]["sources"]):
        slice_ids.append(src["sliceId"])
        for j, sh in enumerate(src["shards"]):
            shards.append(
                Shard(
                    i,
                    sh["uri"],
                    sh["samples"],
                    f"data.sources[{i}].shards[{j}].uri",
                    src.get("jsonCaptionField", DEFAULT_JSON_CAPTION_FIELD),
                    float(src.get("heldOutFraction", 0.0)),
                )
            )
            weights.append(float(src["weight"]))
    return slice_ids, shards, weights


def held_out(key: str, fraction: float) -> bool:
    """The slice's held-out split, by key (make-slice --from-shards writes it): the first 8 bytes of
    sha256(key), as a fraction of 2^64, below `fraction`. Deterministic, independent of shard order."""
    if fraction <= 0:
        return False
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") < fraction * 2.0**64


# ---- tar: WebDataset samples with byte offsets ----


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for sizes >= 8 GiB
        return int.from_bytes(field[1:], "big")
    s = field.rstrip(b"\0 ").strip()
    return int(s, 8) if s else 0


REGULAR = (b"0", b"\0", b"7")  # tar type flags of regular files


def parse_header(hdr: bytes) -> tuple[int, bytes]:
    """(data size, type flag) of a 512-byte tar header; ValueError when it is not one."""
    try:
        chk = _octal(hdr[148:156])
        size = _octal(hdr[124:136])
    except ValueError:
        raise ValueError("not a tar header") from None
    if chk != sum(hdr[:148]) + 256 + sum(hdr[156:]):
        raise ValueError("bad header checksum, not a tar file")
    return size, hdr[156:157]


def header_name(hdr: bytes) -> str:
    """The member name a ustar header holds (prefix/name)."""
    name = hdr[:100].rstrip(b"\0").decode("utf-8", "replace")
    prefix = hdr[345:500].rstrip(b"\0")
    if hdr[257:262] == b"ustar" and prefix:
        name = prefix.decode("utf-8", "replace") + "/" + name
    return name


def pax_path(data: bytes) -> str | None:
    """The path record of a pax extended header, if any."""
    for rec in data.split(b"\n"):
        k, _, v = rec.partition(b" ")[2].partition(b"=")
        if k == b"path":
            return v.decode("utf-8", "replace")
    return None


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
                size, typ = parse_header(hdr)
            except ValueError as e:
                raise self._corrupt(str(e)) from None
            data = self._read(size)
            if len(data) < size or len(self._read(-size % BLOCK)) < -size % BLOCK:
                raise self._corrupt("truncated member")
            if typ == b"L":  # GNU long name of the next member
                longname = data.rstrip(b"\0").decode("utf-8", "replace")
            elif typ == b"x":  # pax extended header: only the path matters here
                longname = pax_path(data) or longname
            elif typ in REGULAR:
                return longname or header_name(hdr), data, start
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


# ---- bad samples: skipped, counted by reason, bounded by data.maxSkippedFraction ----

SKIP_REASONS = (
    "noImage",  # no .jpg/.jpeg/.png/.webp member
    "noCaption",  # no .txt, and no string caption in the .json field
    "captionNotUtf8",  # .txt (or .json) bytes are not UTF-8
    "imageUndecodable",  # not an image PIL can read (bad bytes, unknown format)
    "imageTruncated",  # the image data ends early (truncated JPEG/PNG)
    "imageTooLarge",  # more pixels than preprocess.MAX_IMAGE_PIXELS (decompression bomb)
    "imageMode",  # a pixel mode that does not convert to RGB
)


class SkippedSample(Exception):
    """A sample the loader skips (not an error of the round unless there are too many)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def sample_fields(parts: dict, json_caption_field: str = DEFAULT_JSON_CAPTION_FIELD) -> tuple[bytes, str]:
    """(image bytes, caption) of one sample, or SkippedSample. The caption is the .txt member or,
    without one, the string in field `json_caption_field` of the .json member (img2dataset writes both)."""
    img = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
    if img is None:
        raise SkippedSample("noImage", f"members {sorted(parts)}")
    if "txt" in parts:
        try:
            return img, parts["txt"].decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise SkippedSample("captionNotUtf8", f".txt: {e}") from None
    if "json" in parts:
        try:
            meta = json.loads(parts["json"].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise SkippedSample("captionNotUtf8", f".json: {e}") from None
        except ValueError as e:
            raise SkippedSample("noCaption", f"no .txt and the .json is not JSON: {e}") from None
        cap = meta.get(json_caption_field) if isinstance(meta, dict) else None
        if isinstance(cap, str):
            return img, cap.strip()
        raise SkippedSample("noCaption", f"no .txt and no string {json_caption_field!r} in the .json")
    raise SkippedSample("noCaption", f"no .txt or .json (members {sorted(parts)})")


def decode_image(prep: Preprocessing, data: bytes) -> np.ndarray:
    """uint8 HWC of the model size, or SkippedSample with the reason PIL gave. An image over
    preprocess.MAX_IMAGE_PIXELS is refused before its pixels are decoded."""
    try:
        with Image.open(io.BytesIO(data)) as img:  # header only; Pillow raises above 2x the limit
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise SkippedSample(
                    "imageTooLarge", f"{img.width}x{img.height} pixels, more than the limit of {MAX_IMAGE_PIXELS}"
                )
            return prep.opened_to_uint8(img)
    except SkippedSample:
        raise
    except Image.DecompressionBombError as e:
        raise SkippedSample("imageTooLarge", str(e)) from None
    except Image.UnidentifiedImageError as e:
        raise SkippedSample(*_unidentified(data, e)) from None
    except OSError as e:
        truncated = "truncat" in str(e).lower()
        raise SkippedSample("imageTruncated" if truncated else "imageUndecodable", str(e)) from None
    except ValueError as e:
        msg = str(e)
        raise SkippedSample("imageMode" if "mode" in msg or "conversion" in msg else "imageUndecodable", msg) from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001  a malformed file can make a PIL plugin raise anything
        raise SkippedSample("imageUndecodable", f"{type(e).__name__}: {e}") from None


def _unidentified(data: bytes, err: Exception) -> tuple[str, str]:
    """Why PIL identified no image: Image.open hides its plugins' reasons, so ask the plugin whose
    magic matches (e.g. TIFF: "unknown pixel mode" for a sample layout it cannot decode)."""
    Image.init()
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        try:
            matches = accept is not None and accept(data[:16])
        except Exception:  # noqa: BLE001  a plugin's magic check on too few bytes
            matches = False
        if matches:
            try:
                factory(io.BytesIO(data), "").close()
            except Exception as e:  # noqa: BLE001  the plugin's own reason is what we want
                msg = f"{fmt}: {e}"
                return ("imageMode" if "mode" in str(e) else "imageUndecodable"), msg
            break
    return "imageUndecodable", str(err).split(" <", 1)[0]


@dataclass
class SkipStats:
    """Skipped samples of one rank (or a batch): counts by reason and by shard (index into the
    plan's shards), the first example of each reason, and the held-out samples passed over."""

    by_reason: dict = field(default_factory=dict)
    by_shard: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    held_out: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def add(self, reason: str, shard: int, example: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.by_shard[shard] = self.by_shard.get(shard, 0) + 1
        self.examples.setdefault(reason, example[:300])

    def merge(self, other: SkipStats) -> SkipStats:
        for r, n in other.by_reason.items():
            self.by_reason[r] = self.by_reason.get(r, 0) + n
        for k, n in other.by_shard.items():
            self.by_shard[k] = self.by_shard.get(k, 0) + n
        for r, e in other.examples.items():
            self.examples.setdefault(r, e)
        self.held_out += other.held_out
        return self

    def to_state(self) -> dict:  # checkpoint and inter-process form (JSON keys are strings)
        return {
            "byReason": dict(self.by_reason),
            "byShard": {str(k): n for k, n in self.by_shard.items()},
            "examples": dict(self.examples),
            "heldOut": self.held_out,
        }

    @staticmethod
    def from_state(d: dict | None) -> SkipStats:
        d = d or {}
        return SkipStats(
            dict(d.get("byReason", {})),
            {int(k): n for k, n in d.get("byShard", {}).items()},
            dict(d.get("examples", {})),
            int(d.get("heldOut", 0)),
        )

    def worst(self, shards: list[Shard]) -> tuple[Shard, int]:
        k = max(self.by_shard, key=lambda i: (self.by_shard[i], -i))
        return shards[k], self.by_shard[k]

    def too_many(self, shards: list[Shard], limit: int, fraction: float, budget: int) -> PermanentError:
        sh, n = self.worst(shards)
        reasons = ", ".join(f"{r} {c} (e.g. {self.examples.get(r, '?')})" for r, c in self.by_reason.items())
        return PermanentError(
            f"{self.total} samples skipped, more than data.maxSkippedFraction {fraction:g} of {budget} samples "
            f"allows ({limit}); shard {sh.uri} has {n} of them; by reason: {reasons}"[:1500],
            sh.field,
        )

    def summary(self, shards: list[Shard], fraction: float, limit: int, top: int = 10) -> dict:
        worst = sorted(self.by_shard.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return {
            "total": self.total,
            "byReason": {r: self.by_reason[r] for r in SKIP_REASONS if r in self.by_reason},
            "examples": {r: self.examples[r] for r in SKIP_REASONS if r in self.examples},
            "shards": [{"uri": shards[k].uri, "skipped": n} for k, n in worst],
            "shardsWithSkips": len(self.by_shard),
            "maxSkippedFraction": fraction,
            "limit": limit,
            "heldOutPassedOver": self.held_out,
        }


def skip_limit(fraction: float, budget: int) -> int:
    """Skipped samples allowed for `budget` samples: floor(fraction x budget)."""
    return int(fraction * budget + 1e-9)


def iter_tar(stream, uri: str, field: str) -> Iterator[tuple[str, bytes, str]]:
    """(key, image bytes, caption) per sample of a whole WebDataset tar read as a stream (eval-pack
    building: a sample without an image or caption is an error here, the pack is the user's choice)."""
    try:
        tar = TarSamples(stream, uri, field)
        if tar.exhausted:
            raise PermanentError(f"corrupt shard {uri}: no samples", field)
        while (s := tar.next()) is not None:
            try:
                yield (s[0], *sample_fields(s[1]))
            except SkippedSample as e:
                raise PermanentError(f"corrupt shard {uri}: sample {s[0]!r}: {e}", field) from None
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

    def samples(self, state: StreamState) -> Iterator[tuple[int, str, dict, StreamState]]:
        """Yields (shard index, sample key, {ext: bytes}, position after this sample) from `state` on.
        Every sample is yielded, bad ones included: the batch builder skips them, so a position
        counts skipped samples too and a resumed round passes over the same ones."""
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
                    idx = self.draw(draw)
                    sh = self.shards[idx]
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
                    items.append((idx, key, parts))
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


@dataclass(frozen=True)
class SkipBound:
    """How many bad samples a rank may skip: data.maxSkippedFraction of the rank's budget."""

    fraction: float
    budget: int

    @property
    def limit(self) -> int:
        return skip_limit(self.fraction, self.budget)


class RoundBatches(IterableDataset):
    """The rank's remaining steps as ready batches: uint8 NHWC images, int64 tokens, per-source
    counts, the stream position after the batch, a digest of the sample ids and the samples skipped.

    A batch holds `size` good samples: a bad one (SKIP_REASONS) is passed over and counted, and so is
    a sample of a slice's held-out split. Whether a sample is bad depends on its bytes only, so the
    stream position after a batch (which counts the skipped samples) resumes exactly. A worker whose
    skips (with the rank's before a resume) pass the bound fails the round (exit 2) at once;
    train.py checks the rank's total after each step.

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
        bound: SkipBound | None = None,
        skipped_before: dict | None = None,
    ):
        super().__init__()
        self.s3_settings, self.shards, self.weights, self.n_sources = s3_settings, shards, weights, n_sources
        self.prep, self.seed, self.rank, self.sizes, self.start_step = prep, seed, rank, sizes, start_step
        self.states, self.cfg, self.prefetch, self.retries = states, cfg, prefetch, retries
        self.bound = bound or SkipBound(DEFAULT_MAX_SKIPPED_FRACTION, sum(sizes))
        self.skipped_before = skipped_before  # the rank's SkipStats state at the resumed step

    def __iter__(self):
        info = get_worker_info()
        n = self.cfg.streams
        if info is not None and info.num_workers != n:
            raise RuntimeError(f"RoundBatches needs {n} loader workers (one per stream), got {info.num_workers}")
        first = self.start_step + (info.id if info is not None else 0)
        stride = n if info is not None else 1
        s3 = S3(self.s3_settings)  # per process: boto3 clients must not cross a fork
        self._seen = SkipStats.from_state(self.skipped_before)  # this process's view, for the bound
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
        skipped = SkipStats()
        pos, i = None, 0
        while i < size:
            idx, key, parts, pos = next(it)
            sh = self.shards[idx]
            if held_out(key, sh.held_out_fraction):
                skipped.held_out += 1
                self._seen.held_out += 1
                continue
            try:
                img, txt = sample_fields(parts, sh.json_caption_field)
                images[i] = decode_image(self.prep, img)
            except SkippedSample as e:
                example = f"{sh.uri}#{key}: {e.detail}"
                skipped.add(e.reason, idx, example)
                self._seen.add(e.reason, idx, example)
                if self._seen.total > self.bound.limit:
                    b = self.bound
                    raise self._seen.too_many(self.shards, b.limit, b.fraction, b.budget) from None
                continue
            captions.append(txt)
            counts[sh.source] += 1
            h.update(f"{sh.uri}#{key}\n".encode())
            i += 1
        return {
            "step": step,
            "stream": sid,
            "images": torch.from_numpy(images),
            "tokens": torch.from_numpy(self.prep.tokenize(captions)),
            "counts": counts,
            "state": pos.to_json(),
            "digest": h.hexdigest(),
            "skipped": skipped.to_state(),
            "decodeSeconds": time.perf_counter() - t0,
        }


def make_loader(batches: RoundBatches, workers: int, pin_memory: bool) -> DataLoader:
    """`workers` is 0 (decode in this process) or the number of streams. Two batches in flight per
    worker: a worker needs `workers` steps to build one, so two cover its jitter, and each costs
    /dev/shm (38 MB at ViT-B's 224 px x 256).

    PIL's plugins are all loaded here, before the workers fork: the first sample PIL cannot identify
    would otherwise make each worker import every plugin (~0.2 s) in the middle of the round."""
    Image.init()
    return DataLoader(
        batches,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
