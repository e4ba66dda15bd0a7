"""Shards in img2dataset's exact output layout, and the bad samples web data has (tests and bench).

img2dataset (output_format webdataset) writes per shard `00000.tar` (webdataset's TarWriter: members
`<key>.<ext>` in sorted extension order, `jpg` then `json` then `txt`; keys are the shard number and
the url's index in the shard, `000000012`, with gaps where a download failed), `00000.parquet` (one
row per url: url, caption, key, status, error_message, width, height, original_width,
original_height, exif, sha256) and `00000_stats.json` (count, successes, failed_to_download, ...).
The `.txt` member exists when img2dataset was given a caption column.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
import tarfile

from PIL import Image

from ticclip_trainer import synth

# ---- images ----


def jpeg(i: int, px: int = 64, seed: int = 0) -> tuple[bytes, str]:
    """A small JPEG (one of synth's drawings, resized) and its caption."""
    rng = random.Random(f"{seed}:{i}")
    # synth's first ten shapes and colours: the images these tests were written against.
    shape, colour = rng.choice(synth.SHAPES[:10]), rng.choice(list(synth.COLOURS)[:10])
    pos = rng.choice(list(synth.POSITIONS))
    img = synth.draw(shape, synth.COLOURS[colour], pos, rng).resize((px, px), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), f"a {colour} {shape} at the {pos}"


def truncated_jpeg(i: int) -> bytes:
    data, _ = jpeg(i, px=128)
    return data[: len(data) * 2 // 3]


def bomb_png() -> bytes:
    """10001 x 10001 1-bit PNG: 12 KB on disk, 100 M pixels when opened (over the pixel limit)."""
    buf = io.BytesIO()
    Image.new("1", (10001, 10001)).save(buf, format="PNG")
    return buf.getvalue()


def unknown_mode_tiff() -> bytes:
    """A TIFF whose photometric interpretation (LogL, 32844) PIL has no pixel mode for."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    d = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", d[4:8])[0]
    for i in range(struct.unpack("<H", d[ifd : ifd + 2])[0]):
        off = ifd + 2 + 12 * i
        if struct.unpack("<H", d[off : off + 2])[0] == 262:
            d[off + 8 : off + 10] = struct.pack("<H", 32844)
    return bytes(d)


# Each bad kind: the sample's members (None: the member is absent) and the reason the loader gives.
BAD = {
    "imageUndecodable": lambda i: {"jpg": b"<html>404 not found</html>", "txt": b"a page"},
    "imageTruncated": lambda i: {"jpg": truncated_jpeg(i), "txt": b"a truncated photo"},
    "imageTooLarge": lambda i: {"jpg": bomb_png(), "txt": b"a bomb"},
    "imageMode": lambda i: {"jpg": unknown_mode_tiff(), "txt": b"a tiff"},
    "noCaption": lambda i: {"jpg": jpeg(i)[0], "json": json.dumps({"url": "http://x/y.jpg"}).encode()},
    "captionNotUtf8": lambda i: {"jpg": jpeg(i)[0], "txt": "légende".encode("latin-1")},
    "noImage": lambda i: {"txt": b"a caption without its image"},
}


# ---- shards ----


def sample(i: int, *, txt: bool = True, caption_field: str = "caption", seed: int = 0, px: int = 64) -> dict:
    img, cap = jpeg(i, px, seed)
    meta = {"url": f"http://example.com/{i}.jpg", caption_field: cap, "status": "success", "width": px}
    parts = {"jpg": img, "json": json.dumps(meta).encode()}
    if txt:
        parts["txt"] = cap.encode()
    return parts


def tar_bytes(samples: list[tuple[str, dict]]) -> bytes:
    """A tar as webdataset's TarWriter writes it (PAX, sorted extensions, mode 0o444)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key, parts in samples:
            for ext in sorted(parts):
                data = parts[ext]
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode, info.uname, info.gname = (
                    len(data),
                    1700000000,
                    0o444,
                    "bigdata",
                    "bigdata",
                )
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def shard_files(shard: int, samples: list[dict], failed: int = 0) -> dict[str, bytes]:
    """{name: bytes} of one img2dataset shard: <NNNNN>.tar, <NNNNN>.parquet, <NNNNN>_stats.json.
    `failed` urls (every third index, before the successes run out) have no sample in the tar."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_urls = len(samples) + failed
    failed_idx = set(range(0, 3 * failed, 3)) if failed else set()
    members, rows, it = [], [], iter(samples)
    for u in range(n_urls):
        key = f"{shard:05d}{u:04d}"
        if u in failed_idx:
            rows.append(
                {"url": f"http://example.com/{key}", "caption": None, "key": key, "status": "failed_to_download"}
            )
            continue
        parts = next(it)
        members.append((key, parts))
        meta = json.loads(parts["json"]) if "json" in parts else {}
        rows.append({"url": meta.get("url"), "caption": meta.get("caption"), "key": key, "status": "success"})
    table = pa.table(
        {
            "url": [r["url"] for r in rows],
            "caption": [r["caption"] for r in rows],
            "key": [r["key"] for r in rows],
            "status": [r["status"] for r in rows],
            "error_message": [None if r["status"] == "success" else "timeout" for r in rows],
            "sha256": [hashlib.sha256(r["key"].encode()).hexdigest() for r in rows],
        }
    )
    pbuf = io.BytesIO()
    pq.write_table(table, pbuf)
    stats = {
        "count": n_urls,
        "successes": len(samples),
        "failed_to_download": failed,
        "failed_to_resize": 0,
        "duration": 1.5,
        "start_time": 1700000000.0,
        "end_time": 1700000001.5,
        "status_dict": {"success": len(samples), **({"failed_to_download": failed} if failed else {})},
    }
    return {
        f"{shard:05d}.tar": tar_bytes(members),
        f"{shard:05d}.parquet": pbuf.getvalue(),
        f"{shard:05d}_stats.json": json.dumps(stats, indent=4).encode(),
    }


def write_pool(dest: str, shards: list[list[dict]], s3=None, failed: int = 0, stats: bool = True) -> list[str]:
    """Writes shards 00000.. to a local folder or an s3:// prefix; returns the tar names."""
    names = []
    for n, samples in enumerate(shards):
        for name, data in shard_files(n, samples, failed).items():
            if not stats and name.endswith("_stats.json"):
                continue
            if dest.startswith("s3://"):
                s3.put_bytes(dest.rstrip("/") + "/" + name, data)
            else:
                os.makedirs(dest, exist_ok=True)
                with open(os.path.join(dest, name), "wb") as f:
                    f.write(data)
        names.append(f"{n:05d}.tar")
    return names
