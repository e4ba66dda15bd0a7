"""One shard pool cut into time slices: each sample goes to the slice of its year (or month, or day)
from a field of its .json, or to the slice whose key list names it.

    python -m ticclip_trainer cut-slices --pool s3://data/pool/ --out s3://data/slices/ --by-field year
    python -m ticclip_trainer cut-slices --pool s3://data/pool/ --out s3://data/slices/ \\
        --key-lists ./splits/ --key-field uid          # splits/2014.txt|.npy, ... (TiC-DataComp's uids)

Unlike register-shards this writes new shards: a sample of one pool shard may belong to any slice.
Members are copied byte for byte (nothing is decoded or re-encoded) into `<out>/<sliceId>/shard-
NNNNN.tar`; each slice gets `manifest.json` and `_SUCCESS` last, after every slice's shards are
written. With `--eval-fraction f` the samples whose key hashes below f (data.held_out) go to the
slice's `eval/` shards (and retrieval pack with `--eval-pack-architecture`) instead of its training
shards. A sample without an image or a caption is dropped and counted; one whose slice cannot be
told (field missing or unreadable, key in no list) is counted as unassigned.

Key lists: one file per slice named `<sliceId>.txt` (a key per line) or `<sliceId>.npy` (an array of
strings, or of two uint64 per key as DataComp stores 128-bit uids, written as 32 hex digits).
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections import Counter

import numpy as np

from .data import DEFAULT_JSON_CAPTION_FIELD, IMAGE_EXTS, SkippedSample, TarSamples, held_out, sample_fields
from .errors import PermanentError
from .location import Dest
from .register import SLICE_ID, Folder
from .s3io import S3, S3Settings

_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?")


def slice_of_value(value, granularity: str = "year") -> str | None:
    """2014, "2014", "2014-05-03", "2014-05-03T10:00:00Z" -> "2014" / "2014-05" / "2014-05-03"."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and float(value).is_integer() and 1000 <= value <= 9999:
        return str(int(value)) if granularity == "year" else None
    m = _DATE.match(str(value).strip())
    if not m:
        return None
    parts = {"year": 1, "month": 2, "day": 3}[granularity]
    got = [g for g in m.groups()[:parts] if g]
    return "-".join(got) if len(got) == parts else None


def load_key_lists(location: str, s3: S3 | None = None) -> dict[str, str]:
    """{key: sliceId} from <location>/<sliceId>.txt|.npy files."""
    folder = Folder(location, s3)
    out: dict[str, str] = {}
    for name in sorted(folder.list()):
        sid, ext = os.path.splitext(name)
        if ext not in (".txt", ".npy"):
            continue
        if not SLICE_ID.match(sid):
            raise PermanentError(f"key list {name}: {sid!r} is not a slice id", "--key-lists")
        data = folder.read(name)
        if ext == ".txt":
            keys = [k.strip() for k in data.decode("utf-8").splitlines() if k.strip()]
        else:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            if arr.dtype.names and len(arr.dtype.names) == 2:  # DataComp: (u8, u8) halves of a 128-bit uid
                a, b = arr.dtype.names
                keys = [f"{int(x):016x}{int(y):016x}" for x, y in zip(arr[a], arr[b], strict=True)]
            elif arr.ndim == 2 and arr.shape[1] == 2 and arr.dtype.kind == "u":
                keys = [f"{int(x):016x}{int(y):016x}" for x, y in arr]
            else:
                keys = [str(k) for k in arr.tolist()]
        for k in keys:
            if out.setdefault(k, sid) != sid:
                raise PermanentError(f"key {k!r} is in the lists of slices {out[k]} and {sid}", "--key-lists")
    if not out:
        raise PermanentError(f"no <sliceId>.txt or .npy key lists in {location}", "--key-lists")
    return out


class _SliceWriter:
    """Shards of one slice (or its eval/ split), written through a local temp file, rolled over at
    `shard_size` samples and uploaded."""

    def __init__(self, dest: Dest, subdir: str, shard_size: int, tmp: str):
        self.dest, self.subdir, self.shard_size, self.tmp = dest, subdir, shard_size, tmp
        self.shards: list[dict] = []
        self.tar = None
        self.n = 0
        self.bytes_written = 0

    def add(self, key: str, parts: dict) -> None:
        if self.tar is None:
            self.path = os.path.join(self.tmp, f"{id(self)}-{len(self.shards)}.tar")
            self.tar = tarfile.open(self.path, "w", format=tarfile.USTAR_FORMAT)
        for ext in sorted(parts):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(parts[ext]), 0, 0o644
            self.tar.addfile(info, io.BytesIO(parts[ext]))
        self.n += 1
        if self.n == self.shard_size:
            self.flush()

    def flush(self) -> None:
        if self.tar is None:
            return
        self.tar.close()
        with open(self.path, "rb") as f:
            data = f.read()
        os.remove(self.path)
        key = f"{self.subdir}shard-{len(self.shards):05d}.tar"
        self.dest.put(key, data)
        self.bytes_written += len(data)
        self.shards.append({"key": key, "samples": self.n, "bytes": len(data)})
        self.tar, self.n = None, 0


def cut(
    pool: str,
    out: str,
    by_field: str | None = None,
    key_lists: str | None = None,
    key_field: str | None = None,
    granularity: str = "year",
    caption_field: str = DEFAULT_JSON_CAPTION_FIELD,
    shard_size: int = 5000,
    eval_fraction: float = 0.0,
    eval_pack_architecture: str | None = None,
    s3: S3 | None = None,
) -> dict:
    """Cuts the pool: every shard read once, each sample written to its slice (_Cut), then each
    slice's manifest and _SUCCESS (_finish); returns the report."""
    t0 = time.perf_counter()
    if (by_field is None) == (key_lists is None):
        raise PermanentError("give exactly one of --by-field and --key-lists", "--by-field")
    if not 0 <= eval_fraction < 1:
        raise PermanentError(f"{eval_fraction}: must be in [0, 1)", "--eval-fraction")
    src = Folder(pool, s3)
    s3 = src.s3 or (S3(S3Settings.from_env()) if out.startswith("s3://") else None)
    lists = load_key_lists(key_lists, s3) if key_lists else None
    tars = sorted(n for n in src.list() if n.endswith(".tar"))
    if not tars:
        raise PermanentError(f"no .tar shards directly in {src.location}", "--pool")
    out = out.rstrip("/") + "/"

    def slice_of(key: str, parts: dict) -> str | None:
        return _slice_of_sample(key, parts, by_field, granularity, lists, key_field)

    with tempfile.TemporaryDirectory(prefix="ticclip-cut-") as tmp:
        slices = _Cut(out, s3, shard_size, eval_fraction, tmp)
        for name in tars:
            uri = src.location + name
            f = s3.open_stream(uri, "--pool") if src.is_s3 else open(uri, "rb")
            try:
                slices.read_shard(TarSamples(f, uri, "--pool"), caption_field, slice_of)
            finally:
                f.close()
        report_slices = {}
        for sid, (train_w, eval_w) in sorted(slices.writers.items()):
            train_w.flush()
            eval_w.flush()
            pairs = slices.eval_pairs.get(sid, [])
            report_slices[sid] = _finish(sid, train_w, eval_w, pairs, eval_pack_architecture, pool)
    seconds = time.perf_counter() - t0
    total = sum(slices.counts.values())
    return {
        "pool": src.location,
        "out": out,
        "slices": report_slices,
        "samples": total,
        "unassigned": slices.unassigned,
        "dropped": dict(slices.dropped),
        "bytesRead": slices.bytes_read,
        "bytesWritten": sum(w.bytes_written for pair in slices.writers.values() for w in pair),
        "seconds": seconds,
        "samplesPerSecond": (total + slices.unassigned + sum(slices.dropped.values())) / max(seconds, 1e-9),
    }


def _slice_of_sample(
    key: str,
    parts: dict,
    by_field: str | None,
    granularity: str,
    lists: dict[str, str] | None,
    key_field: str | None,
) -> str | None:
    """The slice a sample goes to: from its .json's by_field, or the key list naming its key (or its
    .json's key_field); None when that cannot be told."""
    meta = None
    if "json" in parts and (by_field or key_field):
        try:
            meta = json.loads(parts["json"].decode("utf-8"))
        except ValueError:
            meta = None
    if by_field:
        return slice_of_value(meta.get(by_field) if isinstance(meta, dict) else None, granularity)
    k = key if not key_field else (meta.get(key_field) if isinstance(meta, dict) else None)
    return lists.get(str(k)) if k is not None and lists is not None else None


class _Cut:
    """The slices being written, a train and an eval/ writer each, and what was counted for the report."""

    def __init__(self, out: str, s3: S3 | None, shard_size: int, eval_fraction: float, tmp: str):
        self.out, self.s3, self.shard_size, self.eval_fraction, self.tmp = out, s3, shard_size, eval_fraction, tmp
        self.writers: dict[str, tuple[_SliceWriter, _SliceWriter]] = {}
        self.eval_pairs: dict[str, list] = {}
        self.counts: Counter = Counter()
        self.dropped: Counter = Counter()
        self.unassigned = 0
        self.bytes_read = 0

    def read_shard(self, reader: TarSamples, caption_field: str, slice_of) -> None:
        """Every sample of one pool shard to its slice; dropped (no image or caption) and unassigned counted."""
        while (s := reader.next()) is not None:
            key, parts = s
            try:
                img_bytes, caption = sample_fields(parts, caption_field)
            except SkippedSample as e:
                self.dropped[e.reason] += 1
                continue
            sid = slice_of(key, parts)
            if sid is None or not SLICE_ID.match(sid):
                self.unassigned += 1
                continue
            train_w, eval_w = self._writers(sid)
            self.counts[sid] += 1
            if held_out(key, self.eval_fraction):
                eval_w.add(key.replace("/", "_"), parts)
                ext = next(e for e in IMAGE_EXTS if e in parts)
                self.eval_pairs.setdefault(sid, []).append((img_bytes, caption, ext))
            else:
                train_w.add(key.replace("/", "_"), parts)
        self.bytes_read += reader.pos

    def _writers(self, sid: str) -> tuple[_SliceWriter, _SliceWriter]:
        """The slice's writers, made on its first sample; a slice already there (_SUCCESS) is never changed."""
        if sid not in self.writers:
            dest = Dest(self.out + sid + "/", self.s3)
            if _exists(dest, "_SUCCESS"):
                raise PermanentError(f"{dest.location} is a slice already; slices never change", "--out")
            self.writers[sid] = (
                _SliceWriter(dest, "", self.shard_size, self.tmp),
                _SliceWriter(dest, "eval/", self.shard_size, self.tmp),
            )
        return self.writers[sid]


def _exists(dest: Dest, rel: str) -> bool:
    if dest.is_s3:
        return dest.s3.exists(dest.uri(rel))
    return os.path.exists(os.path.join(dest.location, rel))


def _finish(sid, train_w: _SliceWriter, eval_w: _SliceWriter, pairs, architecture, pool) -> dict:
    """manifest.json (and eval/) of one slice; _SUCCESS last. A slice of held-out samples only has
    nothing to train on: no manifest, no _SUCCESS, reported."""
    dest = train_w.dest
    if not train_w.shards:
        return {"samples": 0, "heldOut": sum(s["samples"] for s in eval_w.shards), "written": False}
    manifest = {
        "sliceId": sid,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "numSamples": sum(s["samples"] for s in train_w.shards),
        "shards": train_w.shards,
    }
    if eval_w.shards:
        dest.put(
            "eval/manifest.json",
            json.dumps(
                {
                    "sliceId": sid,
                    "numSamples": sum(s["samples"] for s in eval_w.shards),
                    "shards": [{**s, "key": s["key"][len("eval/") :]} for s in eval_w.shards],
                },
                indent=2,
            ).encode(),
        )
        if architecture:
            from .data import decode_image
            from .evalpack import write_retrieval_pack
            from .preprocess import Preprocessing

            prep = Preprocessing.for_model(architecture)
            good = []
            for img, caption, _ext in pairs:
                try:
                    decode_image(prep, img)
                    good.append((img, caption))
                except SkippedSample:
                    pass
            if good:
                write_retrieval_pack(dest.uri("eval/"), f"{sid}-heldout", prep, good, sid, source=pool, s3=dest.s3)
        manifest["eval"] = {"retrieval": "eval/"}
    dest.put("manifest.json", json.dumps(manifest, indent=2).encode())
    dest.put("_SUCCESS", b"")
    return {
        "samples": manifest["numSamples"],
        "shards": len(train_w.shards),
        "heldOut": sum(s["samples"] for s in eval_w.shards),
        "written": True,
    }
