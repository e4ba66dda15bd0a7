"""A round on the tiny model from the real S3 server: loss falls, outputs, warm start, ONNX parity, drift."""

import numpy as np
import pytest
import torch
from helpers import get_json, make_plan, source, train_in_process, write_plan

from ticclip_trainer import models
from ticclip_trainer.preprocess import Preprocessing
from ticclip_trainer.train import weights_digest

BUDGET = 960


@pytest.fixture(scope="module")
def round0(s3, bucket, slices, tmp_path_factory):
    plan = make_plan(
        bucket, "runs/r/rounds/0000", [source(bucket, "2016", slices["2016"])], BUDGET, batch=32, lr=5e-3, warmup=3
    )
    assert train_in_process(write_plan(tmp_path_factory.mktemp("r0"), plan)) == 0
    return plan


def _load(s3, uri, tmp_path):
    s3.download(uri, str(tmp_path / "ck.pt"))
    model = models.create("ticclip-tiny")
    model.load_state_dict(torch.load(tmp_path / "ck.pt", weights_only=True)["state_dict"])
    return model.eval()


def test_round_trains_and_writes_outputs(s3, round0):
    out = round0["output"]["uri"]
    for name in (
        "checkpoint.pt",
        "image_encoder.onnx",
        "text_encoder.onnx",
        "model.json",
        "train_summary.json",
        "_SUCCESS",
    ):
        assert s3.exists(out + name), name
    assert not s3.exists(out + "partial/latest.pt")
    summary = get_json(s3, out + "train_summary.json")
    assert summary["samplesSeen"] == BUDGET and summary["samplesPerSource"] == {"2016": BUDGET}
    assert summary["steps"] == BUDGET // 32
    losses = [p["loss"] for p in summary["lossCurve"]]
    assert len(losses) == summary["steps"]
    first, last = np.mean(losses[:3]), np.mean(losses[-5:])
    assert last < first - 0.2, f"loss did not fall: {first:.3f} -> {last:.3f}"
    assert summary["throughput"]["samplesPerSecond"] > 0
    mj = get_json(s3, out + "model.json")
    assert mj["architecture"] == "ticclip-tiny" and mj["imageSize"] == 32 and mj["embeddingDim"] == 64
    assert mj["tokenizer"]["contextLength"] == 32
    assert mj["onnx"]["image"]["input"] == {"name": "image", "dtype": "float32", "shape": ["batch", 3, 32, 32]}
    assert mj["onnx"]["text"]["input"]["dtype"] == "int64"


def test_rerun_after_success_does_not_train(s3, round0, tmp_path):
    before = s3.client.head_object(
        Bucket=round0["output"]["uri"][5:].split("/")[0], Key=round0["output"]["uri"].split("/", 3)[3] + "checkpoint.pt"
    )["LastModified"]
    assert train_in_process(write_plan(tmp_path, round0)) == 0
    after = s3.client.head_object(
        Bucket=round0["output"]["uri"][5:].split("/")[0], Key=round0["output"]["uri"].split("/", 3)[3] + "checkpoint.pt"
    )["LastModified"]
    assert before == after


def test_onnx_parity(s3, round0, tmp_path):
    import onnxruntime as ort

    out = round0["output"]["uri"]
    model = _load(s3, out + "checkpoint.pt", tmp_path)
    prep = Preprocessing.for_model("ticclip-tiny")
    for name in ("image_encoder.onnx", "text_encoder.onnx"):
        s3.download(out + name, str(tmp_path / name))
    img = ort.InferenceSession(str(tmp_path / "image_encoder.onnx"), providers=["CPUExecutionProvider"])
    txt = ort.InferenceSession(str(tmp_path / "text_encoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    captions = [
        "a red circle at the left",
        "a blue square at the top",
        "a",
        "a green star at the centre",
        "a yellow triangle at the bottom",
        "a cross",
        "two words",
    ]
    for b in (1, 2, 7):
        x = rng.normal(size=(b, 3, 32, 32)).astype(np.float32)
        tok = prep.tokenize(captions[:b])
        with torch.no_grad():
            ref_i = torch.nn.functional.normalize(model.encode_image(torch.from_numpy(x)), dim=-1).numpy()
            ref_t = torch.nn.functional.normalize(model.encode_text(torch.from_numpy(tok)), dim=-1).numpy()
        got_i = img.run(None, {"image": x})[0]
        got_t = txt.run(None, {"text": tok})[0]
        assert got_i.shape == (b, 64) and got_t.shape == (b, 64)
        assert np.allclose(np.linalg.norm(got_i, axis=-1), 1, atol=1e-4)
        assert (got_i * ref_i).sum(-1).min() > 0.999 and (got_t * ref_t).sum(-1).min() > 0.999
    parity = get_json(s3, out + "train_summary.json")["onnxParity"]
    assert set(parity["image"]) == {"1", "2", "7"} and parity["minCosine"] > 0.999


def test_round1_warm_starts_from_round0(s3, bucket, slices, round0, tmp_path):
    init = round0["output"]["uri"] + "checkpoint.pt"
    plan = make_plan(
        bucket, "runs/r/rounds/0001", [source(bucket, "2017", slices["2017"])], 64, round_=1, init=init, warmup=0
    )
    assert train_in_process(write_plan(tmp_path, plan)) == 0
    summary = get_json(s3, plan["output"]["uri"] + "train_summary.json")
    r0 = _load(s3, init, tmp_path)
    assert summary["initWeightsDigest"] == weights_digest(r0)
    assert (
        summary["initWeightsDigest"]
        == get_json(s3, round0["output"]["uri"] + "train_summary.json")["finalWeightsDigest"]
    )
    torch.manual_seed(0)
    assert summary["initWeightsDigest"] != weights_digest(models.create("ticclip-tiny"))
    assert summary["finalWeightsDigest"] != summary["initWeightsDigest"]
