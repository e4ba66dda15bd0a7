"""ONNX export of the two encoders (L2-normalised outputs, dynamic batch) and a parity check."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import Preprocessing

OPSET = 17
PARITY_BATCHES = (1, 2, 7)
PARITY_TEXTS = [
    "a photo",
    "a red circle on the left",
    "two blue striped squares in the top right corner",
    "x",
    "a green star",
    "",
    "a very long caption " * 6,
]


class ImageEncoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return F.normalize(self.model.encode_image(image), dim=-1)


class TextEncoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, text):
        return F.normalize(self.model.encode_text(text), dim=-1)


def export_onnx(model, prep: Preprocessing, outdir: str) -> dict:
    """Writes image_encoder.onnx and text_encoder.onnx; returns their description for model.json."""
    model = model.to("cpu").eval()
    size = prep.image_size
    prev = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA kernel does not export
    try:
        with torch.no_grad():
            torch.onnx.export(
                ImageEncoder(model),
                (torch.randn(2, 3, size, size),),
                os.path.join(outdir, "image_encoder.onnx"),
                input_names=["image"],
                output_names=["embedding"],
                dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
            torch.onnx.export(
                TextEncoder(model),
                (torch.from_numpy(prep.tokenize(["a photo", "a cat"])),),
                os.path.join(outdir, "text_encoder.onnx"),
                input_names=["text"],
                output_names=["embedding"],
                dynamic_axes={"text": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(prev)
    embed_dim = (
        int(model.text_projection.shape[1])
        if hasattr(model, "text_projection") and isinstance(model.text_projection, torch.Tensor)
        else int(model.encode_text(torch.from_numpy(prep.tokenize(["a"]))).shape[-1])
    )
    return {
        "embeddingDim": embed_dim,
        "onnx": {
            "opset": OPSET,
            "image": {
                "file": "image_encoder.onnx",
                "input": {"name": "image", "dtype": "float32", "shape": ["batch", 3, size, size]},
                "output": {
                    "name": "embedding",
                    "dtype": "float32",
                    "shape": ["batch", embed_dim],
                    "l2Normalized": True,
                },
            },
            "text": {
                "file": "text_encoder.onnx",
                "input": {"name": "text", "dtype": "int64", "shape": ["batch", prep.context_length]},
                "output": {
                    "name": "embedding",
                    "dtype": "float32",
                    "shape": ["batch", embed_dim],
                    "l2Normalized": True,
                },
            },
        },
    }


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def parity(model, prep: Preprocessing, outdir: str) -> dict:
    """Min cosine between onnxruntime and PyTorch embeddings, per encoder and batch size."""
    import onnxruntime as ort

    model = model.to("cpu").eval()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    img_sess = ort.InferenceSession(os.path.join(outdir, "image_encoder.onnx"), so, providers=["CPUExecutionProvider"])
    txt_sess = ort.InferenceSession(os.path.join(outdir, "text_encoder.onnx"), so, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    res: dict = {"image": {}, "text": {}}
    with torch.no_grad():
        for b in PARITY_BATCHES:
            x = torch.randn(b, 3, prep.image_size, prep.image_size, generator=gen)
            ref = ImageEncoder(model)(x).numpy()
            got = img_sess.run(None, {"image": x.numpy()})[0]
            res["image"][str(b)] = float(_cos(ref, got).min())
            tok = prep.tokenize(PARITY_TEXTS[:b])
            ref = TextEncoder(model)(torch.from_numpy(tok)).numpy()
            got = txt_sess.run(None, {"text": tok})[0]
            res["text"][str(b)] = float(_cos(ref, got).min())
    res["minCosine"] = min(min(res["image"].values()), min(res["text"].values()))
    return res
