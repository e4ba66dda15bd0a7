"""Data tooling: make-slice (folder, CSV, parquet; local and S3) and synth."""

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ticclip_trainer import synth
from ticclip_trainer.cli import main
from ticclip_trainer.data import iter_tar


def _images(folder, n):
    for i in range(n):
        Image.new("RGB", (40, 30), (i * 20 % 255, 10, 10)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"caption {i}\n")


def _check_slice(dest, slice_id, n):
    m = json.loads((dest / "manifest.json").read_text())
    assert set(m) >= {"sliceId", "createdAt", "numSamples", "shards"} and m["sliceId"] == slice_id
    assert m["numSamples"] == n == sum(s["samples"] for s in m["shards"])
    assert (dest / "_SUCCESS").exists()
    seen = []
    for s in m["shards"]:
        assert set(s) == {"key", "samples", "bytes"} and (dest / s["key"]).stat().st_size == s["bytes"]
        with open(dest / s["key"], "rb") as f:
            seen += [t for _k, _i, t in iter_tar(f, s["key"], "x")]
    return m, seen


def test_make_slice_from_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _images(src, 7)
    dest = tmp_path / "out"
    assert (
        main(["make-slice", "--input", str(src), "--out", str(dest), "--slice-id", "2020-01", "--shard-size", "3"]) == 0
    )
    m, seen = _check_slice(dest, "2020-01", 7)
    assert len(m["shards"]) == 3 and sorted(seen) == sorted(f"caption {i}" for i in range(7))


def test_make_slice_from_csv_and_parquet_with_eval(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _images(src, 10)
    (tmp_path / "pairs.csv").write_text(
        "image,caption\n" + "".join(f"in/img{i}.png,csv caption {i}\n" for i in range(10))
    )
    assert (
        main(
            [
                "make-slice",
                "--input",
                str(tmp_path / "pairs.csv"),
                "--out",
                str(tmp_path / "csv"),
                "--slice-id",
                "s",
                "--eval-fraction",
                "0.2",
            ]
        )
        == 0
    )
    m, _ = _check_slice(tmp_path / "csv", "s", 8)
    assert m["eval"] == {"retrieval": "eval/"} and (tmp_path / "csv" / "eval" / "shard-00000.tar").exists()
    pq.write_table(
        pa.table({"image": [f"in/img{i}.png" for i in range(10)], "caption": [f"p{i}" for i in range(10)]}),
        tmp_path / "pairs.parquet",
    )
    assert (
        main(
            ["make-slice", "--input", str(tmp_path / "pairs.parquet"), "--out", str(tmp_path / "pq"), "--slice-id", "p"]
        )
        == 0
    )
    _check_slice(tmp_path / "pq", "p", 10)


def test_make_slice_to_s3(s3, bucket, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _images(src, 4)
    assert main(["make-slice", "--input", str(src), "--out", f"s3://{bucket}/made/2021/", "--slice-id", "2021"]) == 0
    m = json.loads(s3.get_bytes(f"s3://{bucket}/made/2021/manifest.json"))
    assert m["numSamples"] == 4 and s3.exists(f"s3://{bucket}/made/2021/_SUCCESS")


def test_synth_is_deterministic_and_drifts():
    a = list(synth.samples(0, "2016", 20))
    assert a == list(synth.samples(0, "2016", 20))
    assert a != list(synth.samples(0, "2016", 20, seed=1))
    img = Image.open(io.BytesIO(a[0][1]))
    assert img.size == (synth.SIZE, synth.SIZE)
    words = lambda k: {w for _k, _i, _e, c in synth.samples(k, str(k), 300) for w in c.split()}  # noqa: E731
    early, late = words(0), words(3)
    assert len(late - early) >= 4  # new shapes and colours appear
    assert len(early - late) >= 4  # old ones fade out
    # The drift goes on for 7 slices (npm run experiment:tic at TIC_T=7): every window is new.
    windows = [tuple(synth.concepts(k, synth.SHAPES)[0] + synth.concepts(k, list(synth.COLOURS))[0]) for k in range(7)]
    assert len(set(windows)) == 7
    assert len(words(6) - words(3)) >= 4
    assert list(synth.samples(0, "2016", 5, "eval")) != a[:5]  # held-out split differs


def test_slice_and_evalpack_modules_import_alone_in_either_order():
    """slices.py writes eval packs and evalpack.py writes through Dest: neither imports the other's importer."""
    import subprocess
    import sys

    for first, second in (("slices", "evalpack"), ("evalpack", "slices"), ("synth", "evalpack")):
        code = f"import ticclip_trainer.{first}, ticclip_trainer.{second}"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    pkg = Path(__file__).resolve().parents[1] / "src" / "ticclip_trainer"
    src = {m: (pkg / f"{m}.py").read_text(encoding="utf-8") for m in ("evalpack", "location")}
    assert "from .slices" not in src["evalpack"] and "from .slices" not in src["location"]
