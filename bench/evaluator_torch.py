"""Python side of bench/evaluator.ts (run with the trainer's venv python).

    evaluator_torch.py prepare --out DIR --arch ticclip-tiny --images N
        DIR/model/{image_encoder.onnx,text_encoder.onnx,model.json} (random init, the trainer's
        export), DIR/pack/ (a retrieval pack of N synthetic images, make-evalpack's writer) and
        DIR/int8/ (the same encoders with MatMul/Gemm weights quantised to int8 by onnxruntime's
        quantize_dynamic; Conv stays float: ConvInteger has no CPU kernel for int8 weights).
    evaluator_torch.py torch --dir DIR --batch B --text-batch B --threads T --repeats R
        PyTorch eager CPU encoding of the same pack (float32 normalisation as the evaluator, then
        encode_image / encode_text + L2 normalise).
    evaluator_torch.py ort --dir DIR --batch B --text-batch B --threads T --repeats R
        onnxruntime in Python on the same ONNX files and session options as the evaluator.
Each prints {"imagesPerSecond", "textsPerSecond", "peakRssMiB", ...} as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def prepare(out: str, arch: str, n: int) -> dict:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ticclip_trainer import evalpack, export, models, synth
    from ticclip_trainer.preprocess import Preprocessing

    torch.manual_seed(0)
    model = models.create(arch).eval()
    prep = Preprocessing.for_model(arch)
    os.makedirs(os.path.join(out, "model"), exist_ok=True)
    info = export.export_onnx(model, prep, os.path.join(out, "model"))
    meta = {"architecture": arch, **prep.to_json(), **info}
    with open(os.path.join(out, "model", "model.json"), "w") as f:
        json.dump(meta, f)
    torch.save({"state_dict": model.state_dict()}, os.path.join(out, "model", "checkpoint.pt"))
    os.makedirs(os.path.join(out, "int8"), exist_ok=True)
    for enc in ("image", "text"):
        name = meta["onnx"][enc]["file"]
        quantize_dynamic(
            os.path.join(out, "model", name),
            os.path.join(out, "int8", name),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    with open(os.path.join(out, "int8", "model.json"), "w") as f:
        json.dump(meta, f)
    pairs = [(img, cap) for _k, img, _e, cap in synth.samples(3, "bench", n, "eval")]
    evalpack.write_retrieval_pack(os.path.join(out, "pack"), "bench", prep, pairs, "bench")
    return {"dir": out, "architecture": arch, "images": n}


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_rss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bench_torch(d: str, batch: int, text_batch: int, threads: int, repeats: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ticclip_trainer import evalpack, models

    torch.set_num_threads(threads)
    meta = json.load(open(os.path.join(d, "model", "model.json")))
    model = models.create(meta["architecture"]).eval()
    model.load_state_dict(torch.load(os.path.join(d, "model", "checkpoint.pt"), weights_only=True)["state_dict"])
    manifest, t = evalpack.read_pack(os.path.join(d, "pack"))
    u8, tokens = t["images"], t["texts"].astype(np.int64)

    def images():
        for s in range(0, u8.shape[0], batch):
            x = torch.from_numpy(evalpack.normalise(u8[s : s + batch], manifest["preprocessing"]))
            assert torch.isfinite(F.normalize(model.encode_image(x), dim=-1)).all()

    def texts():
        for s in range(0, tokens.shape[0], text_batch):
            assert torch.isfinite(
                F.normalize(model.encode_text(torch.from_numpy(tokens[s : s + text_batch])), dim=-1)
            ).all()

    with torch.inference_mode():
        ti, tt = _best(images, repeats), _best(texts, repeats)
    return {
        "imagesPerSecond": u8.shape[0] / ti,
        "textsPerSecond": tokens.shape[0] / tt,
        "torch": torch.__version__,
        "threads": threads,
        "peakRssMiB": _peak_rss_mib(),
    }


def bench_ort(d: str, batch: int, text_batch: int, threads: int, repeats: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    from ticclip_trainer import evalpack

    meta = json.load(open(os.path.join(d, "model", "model.json")))
    manifest, t = evalpack.read_pack(os.path.join(d, "pack"))
    u8, tokens = t["images"], t["texts"].astype(np.int64)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

    def session(enc: str):
        return ort.InferenceSession(
            os.path.join(d, "model", meta["onnx"][enc]["file"]), opts, providers=["CPUExecutionProvider"]
        )

    img, txt = session("image"), session("text")
    iname, tname = meta["onnx"]["image"]["input"]["name"], meta["onnx"]["text"]["input"]["name"]

    def images():
        for s in range(0, u8.shape[0], batch):
            img.run(None, {iname: evalpack.normalise(u8[s : s + batch], manifest["preprocessing"])})

    def texts():
        for s in range(0, tokens.shape[0], text_batch):
            txt.run(None, {tname: tokens[s : s + text_batch]})

    ti, tt = _best(images, repeats), _best(texts, repeats)
    return {
        "imagesPerSecond": u8.shape[0] / ti,
        "textsPerSecond": tokens.shape[0] / tt,
        "onnxruntime": ort.__version__,
        "threads": threads,
        "peakRssMiB": _peak_rss_mib(),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--out", required=True)
    a.add_argument("--arch", default="ticclip-tiny")
    a.add_argument("--images", type=int, default=512)
    for name in ("torch", "ort"):
        b = sub.add_parser(name)
        b.add_argument("--dir", required=True)
        b.add_argument("--batch", type=int, default=64, help="images per call")
        b.add_argument("--text-batch", type=int, default=64)
        b.add_argument("--threads", type=int, default=1)
        b.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        res = prepare(args.out, args.arch, args.images)
    else:
        fn = bench_torch if args.cmd == "torch" else bench_ort
        res = fn(args.dir, args.batch, args.text_batch, args.threads, args.repeats)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
