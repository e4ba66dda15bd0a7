"""Held-out image-text retrieval score (meanRecallAt1) of a PyTorch model on WebDataset shards.

A small in-trainer check (tests, the synth drift claim); the project's evaluator scores the ONNX
encoders separately. Retrieval counts a hit when the retrieved item's caption equals the query's
caption, since synthetic captions repeat.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import iter_tar
from .preprocess import Preprocessing


def load_pairs(s3, shard_uris: list[str]) -> list[tuple[bytes, str]]:
    out = []
    for uri in shard_uris:
        out += [(img, txt) for _k, img, txt in iter_tar(s3.open(uri), uri, uri)]
    return out


@torch.no_grad()
def mean_recall_at_1(model, prep: Preprocessing, pairs: list[tuple[bytes, str]]) -> float:
    model = model.to("cpu").eval()
    imgs = torch.from_numpy(np.stack([prep.image_bytes_to_array(i) for i, _ in pairs]))
    caps = [c for _, c in pairs]
    toks = torch.from_numpy(prep.tokenize(caps))
    fi = torch.nn.functional.normalize(model.encode_image(imgs), dim=-1)
    ft = torch.nn.functional.normalize(model.encode_text(toks), dim=-1)
    sim = fi @ ft.T
    same = np.array([[a == b for b in caps] for a in caps])
    i2t = same[np.arange(len(caps)), sim.argmax(1).numpy()].mean()
    t2i = same[np.arange(len(caps)), sim.argmax(0).numpy()].mean()
    return float((i2t + t2i) / 2)
