"""make-evalpack: pack contents, exactness of the uint8 images, CLI on local folders (no S3 needed)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from ticclip_trainer import cli, evalpack, synth
from ticclip_trainer.preprocess import Preprocessing

ARCH = "ticclip-tiny"


@pytest.fixture(scope="module")
def prep():
    return Preprocessing.for_model(ARCH)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [(48, 48), (97, 31), (20, 64), (32, 32), (300, 200)])
def test_evalpack_uint8_images_normalise_to_exactly_the_trainers_arrays(prep, size):
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    u8 = evalpack.image_uint8(prep, img)
    assert u8.dtype == np.uint8 and u8.shape == (3, prep.image_size, prep.image_size)
    got = evalpack.normalise(u8[None], prep.to_json())[0]
    want = prep.image_to_array(img)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_evalpack_retrieval_pack_holds_images_tokens_and_checksums(prep, tmp_path):
    pairs = [(img, cap) for _k, img, _e, cap in synth.samples(0, "2016", 11, "eval")]
    m = evalpack.write_retrieval_pack(str(tmp_path), "2016-heldout", prep, pairs, "2016", shard_rows=4)
    assert m["format"] == "ticclip.evalpack" and m["formatVersion"] == 1 and m["kind"] == "retrieval"
    assert m["sliceId"] == "2016"
    assert m["images"]["shape"] == [11, 3, prep.image_size, prep.image_size]
    assert [s["rows"] for s in m["images"]["shards"]] == [4, 4, 3]
    assert m["texts"]["dtype"] == "int32" and m["texts"]["shape"] == [11, prep.context_length]
    for t in ("images", "texts", "textImage"):
        for sh in m[t]["shards"]:
            data = (tmp_path / sh["file"]).read_bytes()
            assert len(data) == sh["bytes"] and hashlib.sha256(data).hexdigest() == sh["sha256"]
    assert json.loads((tmp_path / "pack.json").read_text()) == m
    manifest, t = evalpack.read_pack(str(tmp_path))
    np.testing.assert_array_equal(t["texts"], prep.tokenize([c for _, c in pairs]))
    np.testing.assert_array_equal(t["textImage"], np.arange(11))
    with Image.open(io.BytesIO(pairs[5][0])) as img:
        np.testing.assert_array_equal(t["images"][5], evalpack.image_uint8(prep, img))


def test_evalpack_read_pack_rejects_a_changed_file(prep, tmp_path):
    pairs = [(img, cap) for _k, img, _e, cap in synth.samples(1, "2017", 3, "eval")]
    m = evalpack.write_retrieval_pack(str(tmp_path), "x", prep, pairs)
    f = tmp_path / m["texts"]["shards"][0]["file"]
    f.write_bytes(b"\0" + f.read_bytes()[1:])
    with pytest.raises(ValueError, match="sha256 mismatch"):
        evalpack.read_pack(str(tmp_path))


def test_evalpack_zeroshot_cli_from_labelled_folder(prep, tmp_path):
    src = tmp_path / "shapes"
    for shape in ("circle", "square", "star"):
        (src / shape).mkdir(parents=True)
        for i in range(2):
            import random

            img = synth.draw(shape, synth.COLOURS["red"], "centre", random.Random(i))
            (src / shape / f"{i}.png").write_bytes(_png(img))
    (src / "notes.txt").write_text("not a class")
    templates = tmp_path / "templates.txt"
    templates.write_text("a {c}\na drawing of a {c}\n")
    out = tmp_path / "pack"
    assert (
        cli.main(
            [
                "eval-pack",
                "zeroshot",
                "--input",
                str(src),
                "--out",
                str(out),
                "--architecture",
                ARCH,
                "--templates",
                str(templates),
            ]
        )
        == 0
    )
    m, t = evalpack.read_pack(str(out))
    assert m["kind"] == "zeroShot" and m["name"] == "shapes"
    assert m["classNames"] == ["circle", "square", "star"]
    assert m["templates"] == ["a {c}", "a drawing of a {c}"]
    np.testing.assert_array_equal(t["labels"], [0, 0, 1, 1, 2, 2])
    assert t["prompts"].shape == (6, prep.context_length)
    np.testing.assert_array_equal(t["prompts"][3], prep.tokenize(["a drawing of a square"])[0])  # class-major


def test_evalpack_retrieval_cli_writes_into_the_slices_eval_folder(tmp_path):
    synth.write(str(tmp_path), ["2016"], train_samples=4, eval_samples=6, shard_size=4)
    assert cli.main(["eval-pack", "retrieval", "--slice", str(tmp_path / "2016"), "--architecture", ARCH]) == 0
    m, t = evalpack.read_pack(str(tmp_path / "2016" / "eval"))
    assert m["sliceId"] == "2016" and t["images"].shape[0] == 6
    slice_manifest = json.loads((tmp_path / "2016" / "manifest.json").read_text())
    assert slice_manifest["eval"]["retrieval"] == "eval/"  # where the evaluator looks for pack.json


@pytest.mark.parametrize("templates, match", [(["a photo"], "must contain"), ([], "none given")])
def test_evalpack_zeroshot_rejects_templates_without_the_class_slot(prep, tmp_path, templates, match):
    samples = [(_png(Image.new("RGB", (8, 8))), 0), (_png(Image.new("RGB", (8, 8))), 1)]
    with pytest.raises(ValueError, match=match):
        evalpack.write_zeroshot_pack(str(tmp_path), "x", prep, samples, ["a", "b"], templates)


def test_evalpack_cli_reports_a_missing_slice_with_exit_code_2(tmp_path, capsys):
    assert cli.main(["eval-pack", "retrieval", "--slice", str(tmp_path / "nope"), "--architecture", ARCH]) == 2
    assert "error:" in capsys.readouterr().err
