"""A deterministic, time-drifting procedural image-text dataset (tests and demo).

Each image is one coloured shape at one of five positions on a noisy dark background, captioned
"a <colour> <shape> at the <position>". Slice k (k-th slice id in time order) draws shapes and
colours from a window of WINDOW concepts starting at k*STEP, newer concepts more often than older
ones: new concepts appear and old ones fade, so a model trained only on early slices has never
seen most of the words and pictures of late slices. Everything is a pure function of
(seed, slice id, split, index).
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator

from PIL import Image, ImageDraw

from .slices import write_slice

# 16 shapes and 16 colours: the window keeps moving to new concepts for 7 slices (starts 0, 2, ..., 12);
# slices after that share the last window. The first 10 of each are the original lists, so slices 0-3
# are the same as before the lists grew.
SHAPES = [
    "circle",
    "square",
    "triangle",
    "cross",
    "diamond",
    "star",
    "ring",
    "bar",
    "arrow",
    "heart",
    "hexagon",
    "pentagon",
    "frame",
    "oval",
    "hourglass",
    "octagon",
]
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 30),
    "blue": (40, 70, 230),
    "yellow": (230, 220, 30),
    "purple": (150, 40, 190),
    "orange": (245, 130, 20),
    "cyan": (30, 210, 220),
    "white": (245, 245, 245),
    "pink": (250, 120, 180),
    "brown": (130, 80, 30),
    "grey": (140, 140, 140),
    "navy": (20, 30, 130),
    "olive": (128, 128, 0),
    "teal": (0, 128, 128),
    "maroon": (128, 0, 0),
    "lime": (170, 250, 60),
}
POSITIONS = {"left": (0.28, 0.5), "right": (0.72, 0.5), "top": (0.5, 0.28), "bottom": (0.5, 0.72), "centre": (0.5, 0.5)}
WINDOW, STEP = 4, 2
SIZE = 48


def concepts(k: int, items: list) -> tuple[list, list[float]]:
    """The window of slice k (clamped to the list) and its weights, newest heaviest."""
    start = min(k * STEP, len(items) - WINDOW)
    window = items[start : start + WINDOW]
    return window, [1.0 + i for i in range(len(window))]


def _polygon(cx, cy, r, n, rot=0.0, inner=None):
    pts = []
    for i in range(n * (2 if inner else 1)):
        rr = inner if inner and i % 2 else r
        a = rot + math.pi * 2 * i / (n * (2 if inner else 1))
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def draw(shape: str, colour: tuple, position: str, rng: random.Random) -> Image.Image:
    bg = tuple(rng.randint(15, 60) for _ in range(3))
    img = Image.new("RGB", (SIZE, SIZE), bg)
    d = ImageDraw.Draw(img)
    for _ in range(30):  # background speckle
        x, y = rng.randrange(SIZE), rng.randrange(SIZE)
        d.point((x, y), fill=tuple(min(255, c + rng.randint(0, 40)) for c in bg))
    px, py = POSITIONS[position]
    cx, cy = px * SIZE + rng.uniform(-2, 2), py * SIZE + rng.uniform(-2, 2)
    r = rng.uniform(7, 10)
    col = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in colour)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=col)
    elif shape == "square":
        d.rectangle(box, fill=col)
    elif shape == "triangle":
        d.polygon(_polygon(cx, cy, r, 3, -math.pi / 2), fill=col)
    elif shape == "cross":
        w = r / 3
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=col)
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=col)
    elif shape == "diamond":
        d.polygon(_polygon(cx, cy, r, 4), fill=col)
    elif shape == "star":
        d.polygon(_polygon(cx, cy, r, 5, -math.pi / 2, inner=r * 0.45), fill=col)
    elif shape == "ring":
        d.ellipse(box, outline=col, width=3)
    elif shape == "bar":
        d.rectangle((cx - r, cy - r / 4, cx + r, cy + r / 4), fill=col)
    elif shape == "arrow":
        d.polygon(
            [
                (cx - r, cy - r / 4),
                (cx, cy - r / 4),
                (cx, cy - r),
                (cx + r, cy),
                (cx, cy + r),
                (cx, cy + r / 4),
                (cx - r, cy + r / 4),
            ],
            fill=col,
        )
    elif shape == "heart":
        d.ellipse((cx - r, cy - r, cx, cy), fill=col)
        d.ellipse((cx, cy - r, cx + r, cy), fill=col)
        d.polygon([(cx - r, cy - r / 2), (cx + r, cy - r / 2), (cx, cy + r)], fill=col)
    elif shape == "hexagon":
        d.polygon(_polygon(cx, cy, r, 6), fill=col)
    elif shape == "pentagon":
        d.polygon(_polygon(cx, cy, r, 5, -math.pi / 2), fill=col)
    elif shape == "frame":
        d.rectangle(box, outline=col, width=3)
    elif shape == "oval":
        d.ellipse((cx - r, cy - r / 2, cx + r, cy + r / 2), fill=col)
    elif shape == "hourglass":
        d.polygon([(cx - r, cy - r), (cx + r, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
    elif shape == "octagon":
        d.polygon(_polygon(cx, cy, r, 8, math.pi / 8), fill=col)
    else:
        raise ValueError(shape)
    return img


def samples(
    k: int, slice_id: str, n: int, split: str = "train", seed: int = 0
) -> Iterator[tuple[str, bytes, str, str]]:
    shapes, sw = concepts(k, SHAPES)
    colours, cw = concepts(k, list(COLOURS))
    for i in range(n):
        rng = random.Random(f"{seed}:{slice_id}:{split}:{i}")
        shape = rng.choices(shapes, sw)[0]
        colour = rng.choices(colours, cw)[0]
        position = rng.choice(list(POSITIONS))
        img = draw(shape, COLOURS[colour], position, rng)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        yield f"{split}-{i:07d}", buf.getvalue(), "png", f"a {colour} {shape} at the {position}"


def write(
    prefix: str,
    slice_ids: list[str],
    train_samples: int,
    eval_samples: int,
    shard_size: int,
    seed: int = 0,
    s3=None,
    eval_pack_architecture: str | None = None,
) -> list[dict]:
    """Writes every slice under <prefix>/<sliceId>/ (local folder or s3://), returns the manifests."""
    out = []
    for k, sid in enumerate(slice_ids):
        out.append(
            write_slice(
                prefix.rstrip("/") + f"/{sid}/",
                sid,
                samples(k, sid, train_samples, "train", seed),
                shard_size,
                samples(k, sid, eval_samples, "eval", seed) if eval_samples else None,
                s3,
                eval_pack_architecture,
            )
        )
    return out
