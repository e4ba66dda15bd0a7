"""Eval packs the operator's TypeScript evaluator reads with no Python stack.

Format v1 (adr/0003-eval-pack-format.md, docs/evaluation.md; zod schema operator/api/eval-pack.ts):
a folder with pack.json (written last) and raw little-endian tensors split along their first
dimension. Images are preprocessed exactly as training does (preprocess.py: shortest-side bicubic
resize, centre crop) and stored as uint8 RGB NCHW; the evaluator applies the mean/std, so
((x / 255) - mean) / std in float32 reproduces Preprocessing.image_to_array bit for bit. Captions
and class prompts are tokenised with the trainer's tokenizer and stored as int32.

    python -m ticclip_trainer eval-pack retrieval --slice s3://data/slices/2016/ --architecture ticclip-tiny
        held-out split <slice>/eval/ (shards + manifest.json) -> pack in <slice>/eval/
    python -m ticclip_trainer eval-pack zeroshot --input ./imagenet-val/ --out s3://eval/imagenet-val/ \
        --architecture ViT-B-16 [--templates templates.txt]
        <input>/<class name>/*.jpg|png|webp -> zero-shot pack
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterable

import numpy as np
from PIL import Image

from .data import iter_tar
from .location import Dest
from .preprocess import Preprocessing

FORMAT, FORMAT_VERSION, MANIFEST = "ticclip.evalpack", 1, "pack.json"
IMAGE_SHARD_ROWS = 1024  # ~150 MB of 224px images per file: the evaluator streams shard by shard
DEFAULT_TEMPLATES = ["a photo of a {c}.", "a picture of a {c}.", "an image of a {c}.", "a close-up photo of a {c}."]
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp"}
DTYPES = {"uint8": np.uint8, "int32": np.int32, "int64": np.int64, "float32": np.float32}


def image_uint8(prep: Preprocessing, img: Image.Image) -> np.ndarray:
    """uint8 [3, S, S] after the trainer's resize + centre crop.

    preprocess.py exposes only the normalised float32 array, so this inverts the normalisation: the
    round trip error is ~1e-5 of a grey level, far below the 0.5 that rounding absorbs (checked in
    tests/test_evalpack.py against image_to_array itself).
    """
    arr = prep.image_to_array(img).astype(np.float64)
    mean = np.array(prep.mean, np.float64)[:, None, None]
    std = np.array(prep.std, np.float64)[:, None, None]
    return np.clip(np.rint((arr * std + mean) * 255.0), 0, 255).astype(np.uint8)


def normalise(images_u8: np.ndarray, pre: dict) -> np.ndarray:
    """The evaluator's load-time normalisation, in float32 (as Preprocessing.image_to_array)."""
    x = images_u8.astype(np.float32) / np.float32(255.0)
    mean = np.array(pre["mean"], np.float32)[None, :, None, None]
    std = np.array(pre["std"], np.float32)[None, :, None, None]
    return (x - mean) / std


def _tensor(dest: Dest, stem: str, ext: str, arr: np.ndarray, shard_rows: int | None = None) -> dict:
    arr = np.ascontiguousarray(arr)
    dtype = {np.dtype(v): k for k, v in DTYPES.items()}[arr.dtype]
    rows = shard_rows or max(1, arr.shape[0])
    shards = []
    for i, start in enumerate(range(0, arr.shape[0], rows)):
        data = arr[start : start + rows].astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        name = f"{stem}-{i:05d}.{ext}" if shard_rows else f"{stem}.{ext}"
        dest.put(name, data)
        shards.append(
            {
                "file": name,
                "rows": int(min(rows, arr.shape[0] - start)),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return {"dtype": dtype, "shape": [int(d) for d in arr.shape], "shards": shards}


def _header(kind: str, name: str, prep: Preprocessing, source: str) -> dict:
    return {
        "format": FORMAT,
        "formatVersion": FORMAT_VERSION,
        "kind": kind,
        "name": name,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "preprocessing": prep.to_json(),
    }


def _images(prep: Preprocessing, blobs: Iterable[bytes]) -> np.ndarray:
    out = []
    for b in blobs:
        with Image.open(io.BytesIO(b)) as img:
            out.append(image_uint8(prep, img))
    return np.stack(out) if out else np.zeros((0, 3, prep.image_size, prep.image_size), np.uint8)


def write_retrieval_pack(
    out: str,
    name: str,
    prep: Preprocessing,
    pairs: Iterable[tuple[bytes, str]],
    slice_id: str | None = None,
    source: str = "",
    s3=None,
    shard_rows: int = IMAGE_SHARD_ROWS,
) -> dict:
    """(image bytes, caption) pairs -> retrieval pack in `out` (local folder or s3://); returns pack.json."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("a retrieval pack needs at least one image-caption pair")
    dest = Dest(out, s3)
    images = _images(prep, (p[0] for p in pairs))
    tokens = prep.tokenize([p[1] for p in pairs]).astype(np.int32)
    manifest = _header("retrieval", name, prep, source)
    if slice_id is not None:
        manifest["sliceId"] = slice_id
    manifest["images"] = _tensor(dest, "images", "u8", images, shard_rows)
    manifest["texts"] = _tensor(dest, "texts", "i32", tokens)
    manifest["textImage"] = _tensor(dest, "text-image", "i32", np.arange(len(pairs), dtype=np.int32))
    dest.put(MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def write_zeroshot_pack(
    out: str,
    name: str,
    prep: Preprocessing,
    samples: Iterable[tuple[bytes, int]],
    class_names: list[str],
    templates: list[str],
    source: str = "",
    s3=None,
    shard_rows: int = IMAGE_SHARD_ROWS,
) -> dict:
    """(image bytes, class index) samples -> zero-shot pack; prompts are class-major."""
    samples = list(samples)
    if not samples:
        raise ValueError("a zero-shot pack needs at least one image")
    if len(class_names) < 2:
        raise ValueError("a zero-shot pack needs at least two classes")
    bad = [t for t in templates if "{c}" not in t]
    if not templates or bad:
        raise ValueError(f"templates must contain {{c}}: {bad or 'none given'}")
    dest = Dest(out, s3)
    images = _images(prep, (s[0] for s in samples))
    labels = np.array([s[1] for s in samples], np.int32)
    prompts = prep.tokenize([t.replace("{c}", c) for c in class_names for t in templates]).astype(np.int32)
    manifest = _header("zeroShot", name, prep, source)
    manifest["images"] = _tensor(dest, "images", "u8", images, shard_rows)
    manifest["labels"] = _tensor(dest, "labels", "i32", labels)
    manifest["classNames"] = class_names
    manifest["templates"] = templates
    manifest["prompts"] = _tensor(dest, "prompts", "i32", prompts)
    dest.put(MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def _read(location: str, rel: str, s3=None) -> bytes:
    if location.startswith("s3://"):
        from .s3io import S3, S3Settings

        return (s3 or S3(S3Settings.from_env())).get_bytes(location.rstrip("/") + "/" + rel)
    with open(os.path.join(location, rel), "rb") as f:
        return f.read()


def heldout_pairs(slice_location: str, s3=None) -> tuple[str, list[tuple[bytes, str]]]:
    """The held-out split of a slice written by slices.write_slice: <slice>/eval/manifest.json + shards."""
    ev = json.loads(_read(slice_location, "eval/manifest.json", s3))
    pairs = []
    for sh in ev["shards"]:
        uri = slice_location.rstrip("/") + "/eval/" + sh["key"]
        for _key, img, caption in iter_tar(io.BytesIO(_read(slice_location, "eval/" + sh["key"], s3)), uri, "eval"):
            pairs.append((img, caption))
    return ev["sliceId"], pairs


def labelled_folder(folder: str) -> tuple[list[str], list[tuple[bytes, int]]]:
    """<folder>/<class name>/<image>: class names are the sub-folder names in sorted order."""
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    samples = []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(folder, c))):
            if os.path.splitext(f)[1].lower() in IMAGE_EXTS:
                with open(os.path.join(folder, c, f), "rb") as fh:
                    samples.append((fh.read(), ci))
    return [c.replace("_", " ") for c in classes], samples


def read_pack(location: str, s3=None) -> tuple[dict, dict[str, np.ndarray]]:
    """pack.json and every tensor, sha256-checked (for the parity test and the PyTorch benchmark)."""
    manifest = json.loads(_read(location, MANIFEST, s3))
    tensors = {}
    for name in ("images", "texts", "textImage", "labels", "prompts"):
        spec = manifest.get(name)
        if spec is None:
            continue
        parts = []
        for sh in spec["shards"]:
            data = _read(location, sh["file"], s3)
            if hashlib.sha256(data).hexdigest() != sh["sha256"]:
                raise ValueError(f"{sh['file']}: sha256 mismatch")
            parts.append(np.frombuffer(data, np.dtype(DTYPES[spec["dtype"]]).newbyteorder("<")))
        tensors[name] = np.concatenate(parts).reshape(spec["shape"])
    return manifest, tensors


def make_retrieval_pack(slice_uri: str, out: str | None, architecture: str) -> str:
    """A slice's held-out split -> retrieval pack (default <slice>/eval/); returns a one-line summary."""
    prep = Preprocessing.for_model(architecture)
    slice_id, pairs = heldout_pairs(slice_uri)
    out = out or slice_uri.rstrip("/") + "/eval/"
    m = write_retrieval_pack(out, f"{slice_id}-heldout", prep, pairs, slice_id, source=slice_uri)
    return f"{out}: retrieval pack of {m['images']['shape'][0]} pairs"


def make_zeroshot_pack(
    input_dir: str, out: str, architecture: str, name: str | None = None, templates_file: str | None = None
) -> str:
    """A labelled image folder <input>/<class>/*.jpg -> zero-shot pack; returns a one-line summary."""
    prep = Preprocessing.for_model(architecture)
    templates = DEFAULT_TEMPLATES
    if templates_file:
        with open(templates_file, encoding="utf-8") as f:
            templates = [ln.strip() for ln in f if ln.strip()]
    classes, samples = labelled_folder(input_dir)
    name = name or os.path.basename(os.path.normpath(input_dir))
    m = write_zeroshot_pack(out, name, prep, samples, classes, templates, source=input_dir)
    return f"{out}: zero-shot pack of {m['images']['shape'][0]} images, {len(classes)} classes"
