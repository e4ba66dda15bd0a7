"""Writing slices: WebDataset shards + manifest.json + `_SUCCESS` last, to a local folder or S3.

Layout (docs/design.md, S3 layout): <prefix>/shard-00000.tar ..., manifest.json, eval/shard-*.tar
(optional held-out pack), _SUCCESS. Shard keys in the manifest are relative to the slice prefix.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterable, Iterator

from .evalpack import write_retrieval_pack
from .location import Dest
from .preprocess import Preprocessing
from .s3io import S3

Sample = tuple[str, bytes, str, str]  # key, image bytes, image extension, caption


def _tar(samples: list[Sample]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, img, ext, caption in samples:
            for name, data in ((f"{key}.{ext}", img), (f"{key}.txt", caption.encode("utf-8"))):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _chunks(it: Iterable[Sample], n: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for s in it:
        chunk.append(s)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_shards(dest: Dest, subdir: str, samples: Iterable[Sample], shard_size: int) -> list[dict]:
    shards = []
    for i, chunk in enumerate(_chunks(samples, shard_size)):
        data = _tar(chunk)
        key = f"{subdir}shard-{i:05d}.tar"
        dest.put(key, data)
        shards.append({"key": key, "samples": len(chunk), "bytes": len(data)})
    return shards


def write_slice(
    location: str,
    slice_id: str,
    train: Iterable[Sample],
    shard_size: int = 1000,
    eval_samples: Iterable[Sample] | None = None,
    s3: S3 | None = None,
    eval_pack_architecture: str | None = None,
) -> dict:
    """Writes the slice and returns its manifest. `_SUCCESS` is written last.

    With eval_pack_architecture, the held-out split is also written as a retrieval eval pack
    (evalpack.py, that model's preprocessing and tokenizer) into eval/, before _SUCCESS, so the
    operator's evaluator can score the slice as soon as it is visible."""
    dest = Dest(location, s3)
    shards = write_shards(dest, "", train, shard_size)
    if not shards:
        raise ValueError("a slice needs at least one sample")
    manifest = {
        "sliceId": slice_id,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "numSamples": sum(s["samples"] for s in shards),
        "shards": shards,
    }
    if eval_samples is not None:
        eval_samples = list(eval_samples)
        ev = write_shards(dest, "eval/", eval_samples, shard_size)
        if ev and eval_pack_architecture:
            write_retrieval_pack(
                location.rstrip("/") + "/eval/",
                f"{slice_id}-heldout",
                Preprocessing.for_model(eval_pack_architecture),
                [(img, caption) for _key, img, _ext, caption in eval_samples],
                slice_id,
                source=location,
                s3=s3,
            )
        if ev:
            dest.put(
                "eval/manifest.json",
                json.dumps(
                    {
                        "sliceId": slice_id,
                        "numSamples": sum(s["samples"] for s in ev),
                        "shards": [{**s, "key": s["key"][len("eval/") :]} for s in ev],
                    },
                    indent=2,
                ).encode(),
            )
            manifest["eval"] = {"retrieval": "eval/"}
    dest.put("manifest.json", json.dumps(manifest, indent=2).encode())
    dest.put("_SUCCESS", b"")
    return manifest


def read_folder(folder: str) -> Iterator[Sample]:
    """Image files with a caption file of the same stem (<stem>.txt), sorted by name."""
    exts = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}
    names = sorted(os.listdir(folder))
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() not in exts:
            continue
        cap = os.path.join(folder, stem + ".txt")
        if not os.path.exists(cap):
            raise ValueError(f"{name} has no caption file {stem}.txt")
        with open(os.path.join(folder, name), "rb") as f, open(cap, encoding="utf-8") as c:
            yield _safe_key(stem), f.read(), exts[ext.lower()], c.read().strip()


def read_table(path: str, image_col: str = "image", caption_col: str = "caption") -> Iterator[Sample]:
    """CSV or parquet of image paths (relative to the table's folder) and captions."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=[image_col, caption_col]).to_pydict()
        rows = zip(t[image_col], t[caption_col], strict=True)
    else:
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            rows = [(r[image_col], r[caption_col]) for r in csv.DictReader(f)]
    base = os.path.dirname(os.path.abspath(path))
    for i, (img, caption) in enumerate(rows):
        p = img if os.path.isabs(img) else os.path.join(base, img)
        ext = os.path.splitext(p)[1].lower().lstrip(".")
        ext = "jpg" if ext == "jpeg" else ext
        if ext not in ("jpg", "png", "webp"):
            raise ValueError(f"row {i}: unsupported image type {p}")
        with open(p, "rb") as f:
            yield f"{i:08d}", f.read(), ext, str(caption).strip()


def _safe_key(stem: str) -> str:
    # WebDataset keys end at the first dot of the file name
    return stem.replace(".", "_")
