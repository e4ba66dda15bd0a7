"""Image preprocessing and tokenisation shared by training, export and (later) make-evalpack.

Must match the evaluator (onnxruntime-node): shortest-side bicubic resize, centre crop, OpenAI
mean/std; CLIP BPE tokens, sot first, eot the highest id (text pooling finds it by argmax), zero
padded to the model's context length.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Decompression-bomb limit, set here rather than inherited from whatever Pillow ships: the loader
# (data.decode_image) refuses an image with more pixels before decoding them and skips the sample as
# imageTooLarge. 89,478,485 pixels (a 9459 px square) is 1/4 GiB at 3 bytes a pixel, Pillow's own
# figure; Pillow itself only warns above it and raises above twice it, the loader refuses both.
MAX_IMAGE_PIXELS = 89_478_485
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocessing:
    architecture: str
    image_size: int
    context_length: int
    mean: tuple = OPENAI_MEAN
    std: tuple = OPENAI_STD
    tokenizer: str = "openai-clip-bpe"
    jpeg_draft: bool = True  # training decode only (image_bytes_to_uint8); the benchmark turns it off

    @staticmethod
    def for_model(architecture: str) -> Preprocessing:
        from .models import model_config

        cfg = model_config(architecture)
        size = cfg["vision_cfg"]["image_size"]
        size = size[0] if isinstance(size, (list, tuple)) else size
        return Preprocessing(architecture, int(size), int(cfg["text_cfg"].get("context_length", 77)))

    def image_to_uint8(self, img: Image.Image) -> np.ndarray:
        """PIL image -> uint8 HWC array: shortest side resized (bicubic) to the model size, centre crop."""
        img = img.convert("RGB")
        w, h = img.size
        scale = self.image_size / min(w, h)
        nw, nh = max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - self.image_size) // 2, (nh - self.image_size) // 2
        img = img.crop((left, top, left + self.image_size, top + self.image_size))
        return np.asarray(img, dtype=np.uint8)

    def normalize(self, hwc_uint8: np.ndarray) -> np.ndarray:
        """uint8 HWC -> float32 CHW, (x / 255 - mean) / std (train.py does the same on the device)."""
        arr = hwc_uint8.astype(np.float32) / 255.0
        arr = (arr - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def image_to_array(self, img: Image.Image) -> np.ndarray:
        """PIL image -> float32 CHW array, normalised."""
        return self.normalize(self.image_to_uint8(img))

    def image_bytes_to_array(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return self.image_to_array(img)

    def image_bytes_to_uint8(self, data: bytes) -> np.ndarray:
        """Training decode (loader workers). A JPEG at least twice the model size is decoded at a
        reduced DCT scale that still covers the model size (what PIL's thumbnail does): a fraction of
        the decode work for the same resized result up to resampling detail."""
        with Image.open(io.BytesIO(data)) as img:
            return self.opened_to_uint8(img)

    def opened_to_uint8(self, img: Image.Image) -> np.ndarray:
        """image_bytes_to_uint8 of an image already opened (its pixels not yet decoded)."""
        if self.jpeg_draft and img.format == "JPEG":
            img.draft("RGB", (self.image_size, self.image_size))
        return self.image_to_uint8(img)

    def tokenize(self, texts: list[str]) -> np.ndarray:
        """int64 [N, context_length]."""
        return _tokenizer(self.context_length)(texts).numpy().astype(np.int64)

    def to_json(self) -> dict:
        return {
            "imageSize": self.image_size,
            "resize": {"mode": "shortest", "interpolation": "bicubic", "crop": "center"},
            "mean": list(self.mean),
            "std": list(self.std),
            "tokenizer": {
                "name": self.tokenizer,
                "contextLength": self.context_length,
                "sotTokenId": 49406,
                "eotTokenId": 49407,
                "padTokenId": 0,
                "vocabSize": 49408,
            },
        }


_TOKENIZERS: dict = {}


def _tokenizer(context_length: int):
    if context_length not in _TOKENIZERS:
        from open_clip.tokenizer import SimpleTokenizer

        _TOKENIZERS[context_length] = SimpleTokenizer(context_length=context_length)
    return _TOKENIZERS[context_length]
