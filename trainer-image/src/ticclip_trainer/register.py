"""Existing WebDataset shards become a slice in place, without rewriting them.

    python -m ticclip_trainer register-shards --shards s3://data/laion/2021/ [--slice-id 2021]
        [--caption-field caption] [--eval-fraction 0.002 [--eval-pack-architecture ViT-B-32]]

The folder (or S3 prefix) holds shards as img2dataset writes them: `00000.tar` (`<key>.jpg|jpeg|png|
webp` + `<key>.txt` and/or `<key>.json`) beside `00000_stats.json` and `00000.parquet`; any `*.tar`
will do. It becomes the slice `<folder name>`: `manifest.json` naming the shards where they are
(keys relative to the folder), optionally a held-out eval split, then `_SUCCESS`. Nothing else is
written and no shard is read whole:

- Counts. A shard's samples come from its `_stats.json` (`successes`) when the file is there and
  plausible (an integer no larger than `count`, and a tar big enough to hold that many samples); the
  first sample is still read (ranged GETs) to learn the layout (image type, caption in .txt or in
  the .json field). Else from its `.parquet` (img2dataset's rows with status "success": the footer and
  the status column, by ranged reads). Otherwise, and always with `--eval-fraction` or
  `--count-from headers`, the tar's headers are walked with ranged reads: each read looks ahead just
  far enough for a sample's small members (.txt, .json) and the next image's header, and the image
  is jumped over (about one GET per sample). Where requests cost more than bytes (small images, a
  store with per-request latency), `--read whole` reads every byte of the shard in 8 MiB ranges
  instead. Walking counts what the trainer will skip (no image, no caption) and foreign members.
- Held-out split (`--eval-fraction f`): a sample whose key hashes below f (data.held_out) is never
  trained on: the manifest's `heldOutFraction` goes into every RoundPlan over the slice and the
  trainer passes over those samples. Their bytes (only theirs) are read and written as `eval/`
  shards with `eval/manifest.json`, and, with `--eval-pack-architecture`, as the retrieval eval pack
  the operator scores. The shards' `samples` in the manifest exclude them.
- Captions: `.txt` when present, else the `--caption-field` of the `.json` (img2dataset writes the
  caption there too); the manifest records the field when it is not `caption`.

The report (stdout, JSON): shards, samples, held-out samples, bytes, where each count came from,
samples without caption or image, foreign members, S3 bytes read and requests, samples/s.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .data import (
    BLOCK,
    DEFAULT_JSON_CAPTION_FIELD,
    IMAGE_EXTS,
    REGULAR,
    SkippedSample,
    _split_name,
    decode_image,
    header_name,
    held_out,
    parse_header,
    pax_path,
    sample_fields,
)
from .errors import PermanentError
from .location import Dest
from .s3io import S3, S3Settings, parse_uri

log = logging.getLogger("ticclip_trainer")

SLICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # operator/api/slice-manifest.ts
KNOWN_EXTS = set(IMAGE_EXTS) | {"txt", "json"}
DEFAULT_WINDOW = 16 * 1024
WHOLE_WINDOW = 8 * 1024 * 1024  # --read whole: every byte, in ranges this long (few requests)


class Folder:
    """A local folder or an s3:// prefix, read by byte ranges; counts the bytes and requests."""

    def __init__(self, location: str, s3: S3 | None = None):
        self.location = location.rstrip("/") + "/"
        self.is_s3 = location.startswith("s3://")
        self.s3 = (s3 or S3(S3Settings.from_env())) if self.is_s3 else None
        self.bytes_read = 0
        self.requests = 0
        self._lock = threading.Lock()

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n
            self.requests += 1

    def list(self) -> dict[str, int]:
        """{name: size} of the objects directly in the folder."""
        if not self.is_s3:
            return {
                n: os.path.getsize(os.path.join(self.location, n))
                for n in os.listdir(self.location)
                if os.path.isfile(os.path.join(self.location, n))
            }
        bucket, prefix = parse_uri(self.location)
        out = {}
        try:
            for page in self.s3.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, Delimiter="/"
            ):
                for o in page.get("Contents", []):
                    out[o["Key"][len(prefix) :]] = o["Size"]
        except Exception as e:  # noqa: BLE001
            raise self.s3._wrap(self.location, e) from e
        return out

    def read(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        if self.is_s3:
            bucket, key = parse_uri(self.location + name)
            kw = {"Range": f"bytes={start}-{'' if length is None else start + length - 1}"} if start or length else {}
            try:
                data = self.s3.client.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()
            except Exception as e:  # noqa: BLE001
                raise self.s3._wrap(self.location + name, e, "--shards") from e
        else:
            with open(os.path.join(self.location, name), "rb") as f:
                f.seek(start)
                data = f.read() if length is None else f.read(length)
        self._count(len(data))
        return data


class Ranged:
    """Reads byte ranges of one object through a cached buffer: a read outside it fetches `ahead`
    bytes (default `window`, at least the read) from its offset."""

    def __init__(self, folder: Folder, name: str, size: int, window: int):
        self.folder, self.name, self.size, self.window = folder, name, size, window
        self.buf, self.start = b"", 0

    def has(self, off: int, n: int) -> bool:
        return self.start <= off and off + n <= self.start + len(self.buf)

    def read(self, off: int, n: int, ahead: int | None = None) -> bytes:
        if not self.has(off, n):
            want = min(self.size - off, max(n, ahead or self.window))
            self.buf, self.start = (self.folder.read(self.name, off, want) if want > 0 else b""), off
        return self.buf[off - self.start : off - self.start + n]


@dataclass
class Member:
    name: str
    offset: int  # of its data
    size: int


def walk_members(r: Ranged, adaptive: bool = True):
    """Regular-file members of a tar, from their headers only (data read by the caller if needed).

    A member whose data is not in the buffer (an image, mostly) is jumped over: the next read starts
    at the following header. What that read needs is the bytes from the end of one image to the end
    of the next image's header (a sample's small members and headers), so it looks ahead by the
    longest such stretch seen so far plus 1 KiB (at most `window`, which is also the first read):
    about one GET per sample, and the images are not read."""
    off, longname, ahead, prev_image_end, longest = 0, None, None, None, 0
    while off + BLOCK <= r.size:
        hdr = r.read(off, BLOCK, ahead)
        if hdr == bytes(BLOCK):
            return
        try:
            size, typ = parse_header(hdr)
        except ValueError as e:
            raise PermanentError(f"{r.folder.location}{r.name}: {e} (at byte {off})", "--shards") from None
        data_off = off + BLOCK
        if data_off + size > r.size:
            raise PermanentError(f"{r.folder.location}{r.name}: truncated member at byte {off}", "--shards")
        if typ == b"L":
            longname = r.read(data_off, size).rstrip(b"\0").decode("utf-8", "replace")
        elif typ == b"x":
            longname = pax_path(r.read(data_off, size)) or longname
        end = data_off + size + (-size % BLOCK)
        if typ in REGULAR:
            name = longname or header_name(hdr)
            longname = None
            if _split_name(name)[1] in IMAGE_EXTS:
                if prev_image_end is not None and adaptive:
                    longest = max(longest, data_off - prev_image_end)
                    ahead = min(r.window, longest + 1024)
                prev_image_end = end
            yield Member(name, data_off, size)
        elif typ != b"g":
            longname = None
        off = end


@dataclass
class ShardScan:
    name: str
    bytes: int
    samples: int = 0  # usable (image and caption), held-out ones included
    held_out: int = 0
    counted_from: str = "headers"
    no_caption: int = 0
    no_image: int = 0
    foreign: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)  # a few of the samples the trainer would skip
    eval_pairs: list = field(default_factory=list)  # (key, image bytes, ext, caption) held out
    note: str = ""


def _samples(members):
    """Members grouped into samples: (key, {ext: Member})."""
    key, parts = None, {}
    for m in members:
        k, ext = _split_name(m.name)
        if k != key and parts:
            yield key, parts
            parts = {}
        key = k
        parts[ext] = m
    if parts:
        yield key, parts


def scan_headers(
    folder: Folder, name: str, size: int, caption_field: str, eval_fraction: float, window: int, whole: bool = False
) -> ShardScan:
    r = Ranged(folder, name, size, WHOLE_WINDOW if whole else window)
    scan = ShardScan(name, size)
    for key, parts in _samples(walk_members(r, adaptive=not whole)):
        for ext in parts:
            if ext not in KNOWN_EXTS:
                scan.foreign[ext] += 1
        img = next((e for e in IMAGE_EXTS if e in parts), None)
        if img is None:
            scan.no_image += 1
            scan.examples.append(f"{key}: noImage")
            continue
        if "txt" not in parts:  # the caption must be in the .json: read it (small)
            js = parts.get("json")
            raw = {"jpg": b""}
            if js is not None:
                raw["json"] = r.read(js.offset, js.size)
            try:
                sample_fields(raw, caption_field)
            except SkippedSample as e:
                scan.no_caption += 1
                scan.examples.append(f"{key}: {e}")
                continue
        scan.samples += 1
        if held_out(key, eval_fraction):
            scan.held_out += 1
            raw = {e: r.read(m.offset, m.size) for e, m in parts.items() if e in (img, "txt", "json")}
            try:
                _, caption = sample_fields(raw, caption_field)
            except SkippedSample as e:
                scan.examples.append(f"{key}: {e}")
                continue
            scan.eval_pairs.append((key, raw[img], img, caption))
    return scan


def _plausible_stats(stats, size: int) -> str | None:
    """Why a _stats.json count cannot be trusted, or None."""
    if not isinstance(stats, dict) or not isinstance(stats.get("successes"), int) or stats["successes"] < 0:
        return "no integer 'successes'"
    n = stats["successes"]
    if isinstance(stats.get("count"), int) and n > stats["count"]:
        return f"successes {n} > count {stats['count']}"
    if size < BLOCK * 2 * (n + 1):  # two members of at least a header each, and the end blocks
        return f"{size} bytes cannot hold {n} samples"
    return None


def scan_stats(folder: Folder, name: str, size: int, stats_name: str, caption_field: str, window: int):
    """A shard counted from its _stats.json, its first sample read for the layout; None if the
    stats cannot be trusted (the caller walks the headers)."""
    try:
        stats = json.loads(folder.read(stats_name))
    except ValueError:
        stats = None
    why = _plausible_stats(stats, size)
    if why:
        return None, f"{stats_name}: {why}"
    scan = ShardScan(name, size, samples=stats["successes"], counted_from="stats")
    if scan.samples == 0:
        return scan, None
    r = Ranged(folder, name, size, window)
    first = next(_samples(walk_members(r)), None)
    if first is None:
        return None, f"{name}: no members although {stats_name} counts {scan.samples}"
    key, parts = first
    scan.foreign.update(e for e in parts if e not in KNOWN_EXTS)
    raw = {e: (r.read(m.offset, m.size) if e in ("txt", "json") else b"") for e, m in parts.items()}
    try:
        sample_fields(raw, caption_field)
    except SkippedSample as e:
        scan.note = f"first sample {key}: {e}"
    return scan, None


class _RangedFile(io.RawIOBase):
    """A seekable file over ranged reads of one object (pyarrow reads a parquet's footer and the
    column chunks it needs, not the whole file)."""

    def __init__(self, folder: Folder, name: str, size: int):
        super().__init__()
        self.folder, self.name, self.size, self.pos = folder, name, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, off: int, whence: int = 0) -> int:
        self.pos = {0: off, 1: self.pos + off, 2: self.size + off}[whence]
        return self.pos

    def readinto(self, b) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        data = self.folder.read(self.name, self.pos, n)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


def scan_parquet(folder: Folder, name: str, size: int, parquet_name: str, parquet_size: int):
    """A shard counted from img2dataset's parquet (rows with status "success"); None if unusable."""
    import pyarrow.parquet as pq

    try:
        status = pq.read_table(_RangedFile(folder, parquet_name, parquet_size), columns=["status"])["status"]
    except Exception as e:  # noqa: BLE001  not img2dataset's parquet, or not a parquet
        return None, f"{parquet_name}: {str(e).splitlines()[0][:200]}"
    n = sum(1 for v in status.to_pylist() if v == "success")
    why = _plausible_stats({"successes": n, "count": len(status)}, size)
    if why:
        return None, f"{parquet_name}: {why}"
    return ShardScan(name, size, samples=n, counted_from="parquet"), None


def register(
    location: str,
    slice_id: str | None = None,
    caption_field: str = DEFAULT_JSON_CAPTION_FIELD,
    eval_fraction: float = 0.0,
    eval_pack_architecture: str | None = None,
    count_from: str = "auto",
    window: int = DEFAULT_WINDOW,
    parallel: int = 8,
    read: str = "ranged",
    s3: S3 | None = None,
) -> dict:
    """Makes the folder's shards a slice in place: each shard scanned (_scan_shard, `parallel` at
    once), manifest.json (and eval/ with the held-out samples), then _SUCCESS; returns the report."""
    t0 = time.perf_counter()
    folder = Folder(location, s3)
    slice_id = _checked_slice_id(folder, slice_id)
    if not 0 <= eval_fraction < 1:
        raise PermanentError(f"{eval_fraction}: must be in [0, 1)", "--eval-fraction")
    objects = folder.list()
    if "_SUCCESS" in objects:
        raise PermanentError(f"{folder.location} is a slice already (_SUCCESS exists); slices never change", "--shards")
    tars = sorted(n for n in objects if n.endswith(".tar"))
    if not tars:
        raise PermanentError(f"no .tar shards directly in {folder.location}", "--shards")

    def one(name: str) -> ShardScan:
        return _scan_shard(folder, objects, name, caption_field, eval_fraction, count_from, window, read == "whole")

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        scans = list(pool.map(one, tars))

    dest = Dest(folder.location, folder.s3)
    used = [s for s in scans if s.samples - s.held_out > 0]
    if not used:
        raise PermanentError(f"no usable samples in {folder.location} ({len(tars)} shards)", "--shards")
    manifest = {
        "sliceId": slice_id,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "numSamples": sum(s.samples - s.held_out for s in used),
        "shards": [{"key": s.name, "samples": s.samples - s.held_out, "bytes": s.bytes} for s in used],
    }
    if caption_field != DEFAULT_JSON_CAPTION_FIELD:
        manifest["jsonCaptionField"] = caption_field
    eval_report = None
    if eval_fraction:
        manifest["heldOutFraction"] = eval_fraction
        eval_report = _write_eval(dest, folder, slice_id, scans, eval_pack_architecture)
        if eval_report["samples"]:
            manifest["eval"] = {"retrieval": "eval/"}
    dest.put("manifest.json", json.dumps(manifest, indent=2).encode())
    dest.put("_SUCCESS", b"")
    return _report(folder, manifest, tars, scans, used, eval_report, time.perf_counter() - t0)


def _checked_slice_id(folder: Folder, slice_id: str | None) -> str:
    """The slice id given, or the folder's name; a permanent error when it is not a slice id."""
    slice_id = slice_id or folder.location.rstrip("/").rsplit("/", 1)[-1]
    if not SLICE_ID.match(slice_id):
        raise PermanentError(
            f"{slice_id!r} is not a slice id (1-128 of [A-Za-z0-9._-], starting with a letter or digit); "
            "name the folder so, or pass --slice-id",
            "--slice-id",
        )
    return slice_id


def _scan_shard(
    folder: Folder,
    objects: dict[str, int],
    name: str,
    caption_field: str,
    eval_fraction: float,
    count_from: str,
    window: int,
    whole: bool,
) -> ShardScan:
    """One shard's samples, counted from the cheapest source that is plausible: <shard>_stats.json,
    else <shard>.parquet, else its tar headers (always the headers when samples are held out, which
    needs each sample's key). The note says why a cheaper source was passed over."""
    stem = name[: -len(".tar")]
    notes = []
    if count_from != "headers" and not eval_fraction:
        if stem + "_stats.json" in objects:
            scan, note = scan_stats(folder, name, objects[name], stem + "_stats.json", caption_field, window)
            if scan is not None:
                return scan
            notes.append(note)
        if stem + ".parquet" in objects:
            scan, note = scan_parquet(folder, name, objects[name], stem + ".parquet", objects[stem + ".parquet"])
            if scan is not None:
                scan.note = "; ".join(notes)
                return scan
            notes.append(note)
        if not notes:
            notes.append(f"no {stem}_stats.json or {stem}.parquet")
    scan = scan_headers(folder, name, objects[name], caption_field, eval_fraction, window, whole)
    scan.note = "; ".join(notes)
    return scan


def _report(
    folder: Folder,
    manifest: dict,
    tars: list[str],
    scans: list[ShardScan],
    used: list[ShardScan],
    eval_report: dict | None,
    seconds: float,
) -> dict:
    """What register-shards prints: the slice, what was counted from where, what was read."""
    foreign = Counter()
    for s in scans:
        foreign.update(s.foreign)
    total = sum(s.samples for s in scans)
    return {
        "sliceId": manifest["sliceId"],
        "uri": folder.location,
        "shards": len(used),
        "shardsLeftOut": [s.name for s in scans if s not in used],
        "samples": manifest["numSamples"],
        "heldOut": sum(s.held_out for s in scans),
        "bytes": sum(s.bytes for s in scans),
        "countsFrom": dict(Counter(s.counted_from for s in scans)),
        "withoutCaption": sum(s.no_caption for s in scans),
        "withoutImage": sum(s.no_image for s in scans),
        "foreignMembers": dict(foreign),
        "examples": [f"{s.name}#{e}" for s in scans for e in s.examples][:10],
        "notes": [f"{s.name}: {s.note}" for s in scans if s.note][:10],
        "eval": eval_report,
        "read": {
            "bytes": folder.bytes_read,
            "requests": folder.requests,
            "bytesPerShard": folder.bytes_read / len(tars),
            "requestsPerShard": folder.requests / len(tars),
            "shareOfShardBytes": folder.bytes_read / max(1, sum(s.bytes for s in scans)),
        },
        "seconds": seconds,
        "samplesPerSecond": total / max(seconds, 1e-9),
    }


def _write_eval(dest: Dest, folder: Folder, slice_id: str, scans: list[ShardScan], architecture: str | None) -> dict:
    """The held-out samples as eval/ shards + eval/manifest.json (and the retrieval pack): the ones
    whose image decodes (the evaluator cannot skip)."""
    from .preprocess import Preprocessing
    from .slices import write_shards

    prep = Preprocessing.for_model(architecture or "ticclip-tiny")
    pairs, bad = [], 0
    for s in scans:
        for key, img, ext, caption in s.eval_pairs:
            try:
                decode_image(prep, img)
            except SkippedSample:
                bad += 1
                continue
            pairs.append((key.replace("/", "_").replace(".", "_"), img, ext, caption))
    if not pairs:
        return {"samples": 0, "undecodable": bad}
    shards = write_shards(dest, "eval/", pairs, 1000)
    dest.put(
        "eval/manifest.json",
        json.dumps(
            {
                "sliceId": slice_id,
                "numSamples": len(pairs),
                "shards": [{**s, "key": s["key"][len("eval/") :]} for s in shards],
            },
            indent=2,
        ).encode(),
    )
    if architecture:
        from .evalpack import write_retrieval_pack

        write_retrieval_pack(
            dest.uri("eval/"),
            f"{slice_id}-heldout",
            prep,
            [(img, caption) for _k, img, _e, caption in pairs],
            slice_id,
            source=folder.location,
            s3=folder.s3,
        )
    return {"samples": len(pairs), "undecodable": bad, "pack": bool(architecture)}
