"""Python side of bench/evaluator.ts (run with the trainer's venv python).

    evaluator_torch.py prepare --out DIR --arch ticclip-tiny --images N
        DIR/model/{image_encoder.onnx,text_encoder.onnx,model.json} (random init, the trainer's
        export) and DIR/pack/ (a retrieval pack of N synthetic images, make-evalpack's writer).
    evaluator_torch.py torch --dir DIR --batch B --threads T --repeats R
        PyTorch eager CPU image encoding of the same pack (float32 normalisation as the evaluator,
        then encode_image + L2 normalise); prints {"imagesPerSecond": ..., "seconds": ...}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def prepare(out: str, arch: str, n: int) -> dict:
    import torch
    from ticclip_trainer import evalpack, export, models, synth
    from ticclip_trainer.preprocess import Preprocessing
    torch.manual_seed(0)
    model = models.create(arch).eval()
    prep = Preprocessing.for_model(arch)
    os.makedirs(os.path.join(out, "model"), exist_ok=True)
    info = export.export_onnx(model, prep, os.path.join(out, "model"))
    with open(os.path.join(out, "model", "model.json"), "w") as f:
        json.dump({"architecture": arch, **prep.to_json(), **info}, f)
    torch.save({"state_dict": model.state_dict()}, os.path.join(out, "model", "checkpoint.pt"))
    pairs = [(img, cap) for _k, img, _e, cap in synth.samples(3, "bench", n, "eval")]
    evalpack.write_retrieval_pack(os.path.join(out, "pack"), "bench", prep, pairs, "bench")
    return {"dir": out, "architecture": arch, "images": n}


def bench_torch(d: str, batch: int, threads: int, repeats: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from ticclip_trainer import evalpack, models
    torch.set_num_threads(threads)
    meta = json.load(open(os.path.join(d, "model", "model.json")))
    model = models.create(meta["architecture"]).eval()
    model.load_state_dict(torch.load(os.path.join(d, "model", "checkpoint.pt"), weights_only=True)["state_dict"])
    manifest, t = evalpack.read_pack(os.path.join(d, "pack"))
    u8 = t["images"]
    n = u8.shape[0]
    with torch.inference_mode():
        x = torch.from_numpy(evalpack.normalise(u8[:batch], manifest["preprocessing"]))
        F.normalize(model.encode_image(x), dim=-1)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for s in range(0, n, batch):
                x = torch.from_numpy(evalpack.normalise(u8[s:s + batch], manifest["preprocessing"]))
                e = F.normalize(model.encode_image(x), dim=-1)
                assert np.isfinite(e.numpy()).all()
            best = min(best, time.perf_counter() - t0)
    return {"imagesPerSecond": n / best, "seconds": best, "images": n, "torch": torch.__version__, "threads": threads}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--out", required=True)
    a.add_argument("--arch", default="ticclip-tiny")
    a.add_argument("--images", type=int, default=512)
    b = sub.add_parser("torch")
    b.add_argument("--dir", required=True)
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    res = prepare(args.out, args.arch, args.images) if args.cmd == "prepare" else \
        bench_torch(args.dir, args.batch, args.threads, args.repeats)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
