"""Fixtures for the evaluation integration tests, run with the trainer's venv python.

    fixture.py build --bucket B [--rounds 3]
        synthetic drifting slices -> s3://B/slices/<id>/ (trainer's synth), a retrieval pack per
        slice (make-evalpack), a zero-shot pack of synthetic shapes -> s3://B/eval/shapes/, and
        `rounds` training rounds of the tiny model with the real trainer (run_round, warm-started,
        CumulativeAll) -> s3://B/runs/rounds/<NNNN>/. Prints a JSON summary.
    fixture.py bad-models --bucket B
        ONNX exports that break the contract: NaN output, wrong input name, wrong image size.
    fixture.py all --bucket B [--rounds 3]
        build + bad-models + parity of the last round on every slice pack, in one process (torch
        imports once: the slow part on a small CPU).
    fixture.py parity --pack URI --round-uri URI
        open_clip in PyTorch (checkpoint.pt, not ONNX) on the same pack: Recall@K with the same tie
        rule, computed independently of the TypeScript evaluator. Prints JSON.
S3 from S3_ENDPOINT / AWS_* in the environment.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile

import numpy as np

SLICES = ["2016", "2017", "2018", "2019"]
TRAIN, HELDOUT, SHARD = 192, 48, 96
ARCH = "ticclip-tiny"


def _s3():
    from ticclip_trainer.s3io import S3, S3Settings

    return S3(S3Settings.from_env())


def build(bucket: str, rounds: int) -> dict:
    from ticclip_trainer import evalpack, synth
    from ticclip_trainer.preprocess import Preprocessing
    from ticclip_trainer.train import run_round

    s3 = _s3()
    prep = Preprocessing.for_model(ARCH)
    with tempfile.TemporaryDirectory() as tmp:
        # Written locally and uploaded, empty markers last with a client of their own: against the
        # local MinIO a boto3 PUT right after an empty-body PUT on the same connection stalls 30 s.
        manifests = synth.write(tmp, SLICES, TRAIN, HELDOUT, SHARD, seed=0)
        _upload_tree(s3, tmp, f"s3://{bucket}/slices/")
    for m in manifests:
        loc = f"s3://{bucket}/slices/{m['sliceId']}/"
        slice_id, pairs = evalpack.heldout_pairs(loc, s3)
        evalpack.write_retrieval_pack(loc + "eval/", f"{slice_id}-heldout", prep, pairs, slice_id, loc, s3)
    # zero-shot: 60 images of 10 shapes (drawn like the synthetic data), classes = shape names
    import random

    # The first ten shapes and colours, as when synth had only those: the fixture's packs (and
    # evaluation.test.ts's chance of 1/10) stay what they were when the lists grew.
    shapes = synth.SHAPES[:10]
    colours = list(synth.COLOURS)[:10]
    samples = []
    for i in range(60):
        rng = random.Random(f"zs:{i}")
        c = i % len(shapes)
        img = synth.draw(shapes[c], synth.COLOURS[rng.choice(colours)], rng.choice(list(synth.POSITIONS)), rng)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        samples.append((buf.getvalue(), c))
    evalpack.write_zeroshot_pack(
        f"s3://{bucket}/eval/shapes/",
        "shapes",
        prep,
        samples,
        shapes,
        ["a {c}", "a {c} at the centre", "a photo of a {c}"],
        "synthetic",
        s3,
    )
    out = []
    init = None
    for r in range(min(rounds, len(SLICES))):
        sources = [
            {
                "sliceId": m["sliceId"],
                "weight": 1.0,
                "expectedShare": 1.0 / (r + 1),
                "shards": [
                    {"uri": f"s3://{bucket}/slices/{m['sliceId']}/{s['key']}", "samples": s["samples"]}
                    for s in m["shards"]
                ],
            }
            for m in manifests[: r + 1]
        ]
        uri = f"s3://{bucket}/runs/rounds/{r:04d}/"
        plan = {
            "schemaVersion": 1,
            "run": {"namespace": "default", "name": "eval-test", "uid": "0000-eval"},
            "round": r,
            "newSlices": [SLICES[r]],
            "replay": "CumulativeAll",
            "model": {"architecture": ARCH, "initCheckpoint": init},
            "data": {"sources": sources, "samples": 96},
            "optimizer": {
                "lr": 2e-3,
                "weightDecay": 0.1,
                "warmupSteps": 2 if r == 0 else 0,
                "batchSize": 32,
                "precision": "fp32",
            },
            "output": {"uri": uri},
            "checkpointIntervalMinutes": 60,
            "seed": r,
            "s3": {"region": os.environ.get("AWS_REGION", "us-east-1"), "endpoint": os.environ["S3_ENDPOINT"]},
        }
        rc = run_round(plan)
        if rc != 0:
            raise SystemExit(f"round {r} failed with {rc}")
        out.append(uri)
        init = uri + "checkpoint.pt"
    return {
        "slices": SLICES,
        "rounds": out,
        "zeroShot": f"s3://{bucket}/eval/shapes/",
        "source": f"s3://{bucket}/slices/",
    }


def _upload_tree(s3, folder: str, prefix: str) -> None:
    from ticclip_trainer.s3io import S3, S3Settings

    files = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
    empty = [f for f in files if os.path.getsize(os.path.join(folder, f)) == 0]
    for f in files:
        if f not in empty:
            s3.upload(os.path.join(folder, f), prefix + f)
    markers = S3(S3Settings.from_env())
    for f in empty:
        markers.put_bytes(prefix + f, b"")


def bad_models(bucket: str) -> dict:
    """Each folder holds a model.json claiming the usual contract and encoders that break it."""
    import torch
    import torch.nn.functional as F

    from ticclip_trainer import export, models
    from ticclip_trainer.preprocess import Preprocessing

    s3 = _s3()
    prep = Preprocessing.for_model(ARCH)
    model = models.create(ARCH).eval()

    class NanImage(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            e = F.normalize(self.m.encode_image(image), dim=-1)
            return e * (image[:, :1, :1, :1].reshape(-1, 1) * 0 + float("nan"))

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        good = os.path.join(tmp, "good")
        os.makedirs(good)
        info = export.export_onnx(model, prep, good)
        model_json = {"architecture": ARCH, **prep.to_json(), **info}
        S = prep.image_size
        variants = {
            "nan": lambda d: _export(NanImage(model), torch.randn(2, 3, S, S), "image", d),
            "wrong-name": lambda d: _export(export.ImageEncoder(model), torch.randn(2, 3, S, S), "pixels", d),
            "wrong-size": lambda d: _export(_Resized(model, S), torch.randn(2, 3, S // 2, S // 2), "image", d),
        }
        for name, fn in variants.items():
            d = os.path.join(tmp, name)
            os.makedirs(d)
            fn(os.path.join(d, "image_encoder.onnx"))
            uri = f"s3://{bucket}/bad/{name}/"
            s3.upload(os.path.join(d, "image_encoder.onnx"), uri + "image_encoder.onnx")
            s3.upload(os.path.join(good, "text_encoder.onnx"), uri + "text_encoder.onnx")
            s3.put_bytes(uri + "model.json", json.dumps(model_json).encode())
            out[name] = uri
    return out


class _Resized:
    """An image encoder exported for half-size input (its graph's input shape disagrees with model.json)."""

    def __new__(cls, model, size):
        import torch
        import torch.nn.functional as F

        from ticclip_trainer.export import ImageEncoder

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = ImageEncoder(model)

            def forward(self, image):
                return self.enc(F.interpolate(image, size=(size, size)))

        return M()


def _export(module, example, input_name: str, path: str) -> None:
    import torch

    prev = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                path,
                input_names=[input_name],
                output_names=["embedding"],
                dynamic_axes={input_name: {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(prev)


def recall(images: np.ndarray, texts: np.ndarray, text_image: np.ndarray, tokens: np.ndarray, ks: list[int]) -> dict:
    """Recall@K both directions with the evaluator's documented rule, written independently: a caption
    is right for an image when its token ids equal those of one of the image's captions; between
    different texts ties count against the model. Every caption is a candidate (no deduplication)."""
    sim = images.astype(np.float64) @ texts.astype(np.float64).T  # [N, M]
    n, m = sim.shape
    _, group = np.unique(tokens, axis=0, return_inverse=True)
    group = group.reshape(-1)
    has = np.zeros((n, group.max() + 1), dtype=bool)
    has[text_image, group] = True
    right = has[:, group]  # [N, M]: caption c's text is one of image i's
    best_text = np.where(right, sim, -np.inf).max(1)
    i2t_rank = ((sim >= best_text[:, None]) & ~right).sum(1)
    best_image = np.where(right, sim, -np.inf).max(0)
    t2i_rank = ((sim >= best_image[None, :]) & ~right).sum(0)
    out = {}
    for k in sorted({1, *ks}):
        out[f"imageToTextRecallAt{k}"] = float((i2t_rank < k).mean())
        out[f"textToImageRecallAt{k}"] = float((t2i_rank < k).mean())
    out["meanRecallAt1"] = (out["imageToTextRecallAt1"] + out["textToImageRecallAt1"]) / 2
    return out


def torch_model(round_uri: str):
    import torch

    from ticclip_trainer import models

    s3 = _s3()
    meta = json.loads(s3.get_bytes(round_uri + "model.json"))
    model = models.create(meta["architecture"]).eval()
    with tempfile.TemporaryDirectory() as tmp:
        s3.download(round_uri + "checkpoint.pt", os.path.join(tmp, "c.pt"))
        sd = torch.load(os.path.join(tmp, "c.pt"), map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(sd)
    return model


def parity(pack: str, round_uri: str, ks: list[int]) -> dict:
    import torch
    import torch.nn.functional as F

    from ticclip_trainer import evalpack

    manifest, t = evalpack.read_pack(pack, _s3())
    model = torch_model(round_uri)
    with torch.no_grad():
        x = torch.from_numpy(evalpack.normalise(t["images"], manifest["preprocessing"]))
        img = F.normalize(model.encode_image(x), dim=-1).numpy()
        txt = F.normalize(model.encode_text(torch.from_numpy(t["texts"].astype(np.int64))), dim=-1).numpy()
    return recall(img, txt, t["textImage"].astype(np.int64), t["texts"], ks)


def parity_zeroshot(pack: str, round_uri: str) -> dict:
    """open_clip's own build_zero_shot_classifier and accuracy (open_clip_train.zero_shot) on the pack."""
    import open_clip
    import torch
    import torch.nn.functional as F
    from open_clip_train.zero_shot import accuracy

    from ticclip_trainer import evalpack, models

    manifest, t = evalpack.read_pack(pack, _s3())
    model = torch_model(round_uri)
    models.register()
    tokenizer = open_clip.get_tokenizer(json.loads(_s3().get_bytes(round_uri + "model.json"))["architecture"])
    templates = [tpl.replace("{c}", "{}") for tpl in manifest["templates"]]
    with torch.no_grad():
        classifier = open_clip.build_zero_shot_classifier(
            model, tokenizer, manifest["classNames"], templates, device="cpu", use_tqdm=False
        )
        x = torch.from_numpy(evalpack.normalise(t["images"], manifest["preprocessing"]))
        logits = F.normalize(model.encode_image(x), dim=-1) @ classifier
        top1, top5 = accuracy(logits, torch.from_numpy(t["labels"].astype(np.int64)), topk=(1, 5))
    n = t["labels"].shape[0]
    return {"top1": top1 / n, "top5": top5 / n}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--bucket", required=True)
    b.add_argument("--rounds", type=int, default=3)
    bm = sub.add_parser("bad-models")
    bm.add_argument("--bucket", required=True)
    al = sub.add_parser("all")
    al.add_argument("--bucket", required=True)
    al.add_argument("--rounds", type=int, default=3)
    pa = sub.add_parser("parity")
    pa.add_argument("--pack", required=True)
    pa.add_argument("--round-uri", required=True)
    pa.add_argument("--k", default="1,5,10")
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if a.cmd == "build":
        res = build(a.bucket, a.rounds)
    elif a.cmd == "all":
        res = build(a.bucket, a.rounds)
        res["bad"] = bad_models(a.bucket)
        last = res["rounds"][-1]
        res["parity"] = {
            "roundUri": last,
            "k": [1, 5, 10],
            "packs": {sid: parity(f"{res['source']}{sid}/eval/", last, [1, 5, 10]) for sid in SLICES},
            "zeroShot": parity_zeroshot(res["zeroShot"], last),
        }
    elif a.cmd == "bad-models":
        res = bad_models(a.bucket)
    else:
        res = parity(a.pack, a.round_uri, [int(k) for k in a.k.split(",")])
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
