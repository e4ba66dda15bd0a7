"""Initial checkpoints (`model.initCheckpoint`): the formats people start from, read by open_clip's
own loading code and checked against the plan's architecture before any weight is copied.

- open_clip weights: `torch.save` of a state dict or of a training checkpoint (`{"epoch", "name",
  "state_dict", "optimizer", ...}`, keys with DDP's `module.` or torch.compile's `_orig_mod.`), `.pt`,
  `.pth` or `.bin` (hub's `open_clip_pytorch_model.bin`). TiC-CLIP's released per-year checkpoints are
  open_clip training checkpoints whose optimizer state holds numpy scalars (open_clip before 2.30
  computed the lr with np.cos): weights-only loading allows those few numpy types and nothing else.
- `.safetensors` (hub's `open_clip_model.safetensors`).
- A folder, `s3://.../name/` (ending in '/'): a hub snapshot mirrored into S3 with its
  `open_clip_config.json`; the weights file is the one open_clip itself picks from the folder
  (`open_clip.factory._find_checkpoint_in_dir`: safetensors first). The config's `model_cfg` must
  describe the plan's architecture.
- OpenAI's CLIP files (`ViT-B-32.pt`, ...): TorchScript archives with fp16 weights, trained with
  QuickGELU (open_clip maps them to its `*-quickgelu` architectures). These are read with
  `torch.jit.load`, which is NOT weights-only: TorchScript deserialises code (TorchScript IR, not
  Python pickle). Convert one once to safetensors to avoid that (docs/your-data.md).

Reading goes through `open_clip.factory.load_state_dict` (safetensors, `state_dict` key, TorchScript state
dict) and `open_clip.factory.convert_state_dict` (third-party layouts); the state dict must then hold exactly the
architecture's keys with its shapes (no silent position-embedding resize, unlike open_clip's
`load_checkpoint`), or the round exits 2 saying which architecture the checkpoint looks like, from
its config or from its shapes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch

from .errors import PermanentError
from .s3io import S3

log = logging.getLogger("ticclip_trainer")

FIELD = "model.initCheckpoint"
CONFIG_NAME = "open_clip_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass
class LocalCheckpoint:
    path: str  # the weights file
    uri: str  # what the plan named (file or folder), for messages
    config: dict | None  # open_clip_config.json of a folder
    torchscript: bool


def fetch(s3: S3, uri: str, tmp: str) -> LocalCheckpoint:
    """Downloads the checkpoint (a file, or a hub folder's config and chosen weights) into `tmp`."""
    if not uri.endswith("/"):
        path = os.path.join(tmp, "init" + _suffix(uri))
        s3.download(uri, path, field=FIELD)
        return LocalCheckpoint(path, uri, None, is_torchscript(path))
    names = [k.rsplit("/", 1)[-1] for k in s3.list_keys(uri) if "/" not in k[len(_key(uri)) :]]
    folder = Path(tmp) / "snapshot"
    folder.mkdir()
    config = None
    if CONFIG_NAME in names:
        try:
            config = json.loads(s3.get_bytes(uri + CONFIG_NAME, field=FIELD))
        except ValueError as e:
            raise PermanentError(f"{uri}{CONFIG_NAME} is not JSON: {e}", FIELD) from e
        if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
            raise PermanentError(f"{uri}{CONFIG_NAME} has no model_cfg object", FIELD)
    weights = [n for n in names if n.endswith(WEIGHT_SUFFIXES)]
    for n in weights:  # empty stand-ins, so open_clip's own rule picks among the names
        (folder / n).touch()
    chosen = open_clip.factory._find_checkpoint_in_dir(folder) if weights else None
    if chosen is None:
        raise PermanentError(
            f"{uri} holds no weights file ({', '.join(WEIGHT_SUFFIXES)}); it has {sorted(names)[:10]}", FIELD
        )
    name = os.path.basename(chosen)
    s3.download(uri + name, chosen, field=FIELD)
    log.info("%s: weights %s, config %s", uri, name, "yes" if config else "none")
    return LocalCheckpoint(chosen, uri + name, config, is_torchscript(chosen))


def _key(uri: str) -> str:
    return uri[len("s3://") :].partition("/")[2]


def _suffix(uri: str) -> str:
    """The name's suffix where open_clip looks at it (.safetensors is read with safetensors)."""
    return ".safetensors" if uri.endswith(".safetensors") else ".pt"


def is_torchscript(path: str) -> bool:
    """A TorchScript archive: a zip with constants.pkl (torch.save archives have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in z.namelist())


def _numpy_scalar_globals() -> list:
    """What open_clip training checkpoints pickle besides tensors: numpy scalars and dtypes (the lr of
    the optimizer state). Registered under the name numpy 1.x wrote them with, too."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed = [scalar, np.dtype, (scalar, "numpy.core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def read_state_dict(ck: LocalCheckpoint) -> dict:
    """The checkpoint's state dict, through open_clip's load_state_dict: weights-only (plus numpy
    scalars) except for a TorchScript archive."""
    try:
        if ck.torchscript:
            sd = open_clip.factory.load_state_dict(ck.path, weights_only=False)  # torch.load -> torch.jit.load
        else:
            with torch.serialization.safe_globals(_numpy_scalar_globals()):
                sd = open_clip.factory.load_state_dict(ck.path, weights_only=True)
    except Exception as e:  # noqa: BLE001  torch, safetensors and pickle raise many types
        raise PermanentError(f"{ck.uri} is not a readable checkpoint: {str(e).splitlines()[0][:400]}", FIELD) from e
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise PermanentError(f"{ck.uri} holds no state dict of tensors", FIELD)
    for k in _OPENAI_EXTRA_KEYS:
        sd.pop(k, None)
    # open_clip strips `module.` only when the first key has it; strip both wrappers from every key.
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in sd.items()}


def load_initial(model, architecture: str, ck: LocalCheckpoint) -> None:
    """Checks that `ck` is a checkpoint of `architecture` and copies its weights into `model`."""
    sd = open_clip.factory.convert_state_dict(model, read_state_dict(ck))
    own = model.state_dict()
    transient = {n for n, _ in model.named_buffers()} - set(own)  # attn_mask: TorchScript archives keep it
    sd = {k: v for k, v in sd.items() if k not in transient}
    if "logit_scale" in sd and sd["logit_scale"].ndim != own["logit_scale"].ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(own["logit_scale"].shape)
    cfg = open_clip.get_model_config(architecture) or {}
    problems = []
    if ck.config is not None and _norm(ck.config["model_cfg"]) != _norm(cfg):
        problems.append(f"its {CONFIG_NAME} describes {_describe_config(ck.config['model_cfg'])}")
    if ck.torchscript and not cfg.get("quick_gelu", False):
        problems.append("an OpenAI TorchScript checkpoint was trained with QuickGELU, the architecture uses GELU")
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or extra or shapes:
        detail = "; ".join(
            f"{what}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
            for what, items in (("missing", missing), ("unexpected", extra), ("shape", shapes))
            if items
        )
        problems.append(f"its weights do not ({detail})")
    if problems:
        quick = True if ck.torchscript else (bool(ck.config["model_cfg"].get("quick_gelu")) if ck.config else None)
        looks = looks_like(sd, quick, ck.config)
        raise PermanentError(
            f"{ck.uri} does not fit architecture {architecture}: {'; '.join(problems)}; it looks like {looks}"[:1500],
            FIELD,
        )
    model.load_state_dict(sd, strict=True)


# ---- which architecture a checkpoint looks like ----


def _norm(model_cfg: dict) -> dict:
    """A model config with open_clip's defaults filled in, for comparison."""
    out = {k: v for k, v in model_cfg.items() if k not in ("vision_cfg", "text_cfg")}
    out["quick_gelu"] = bool(out.get("quick_gelu", False))
    out["custom_text"] = bool(out.get("custom_text", False))
    for name, cls in (("vision_cfg", open_clip.model.CLIPVisionCfg), ("text_cfg", open_clip.model.CLIPTextCfg)):
        sub = model_cfg.get(name, {})
        try:
            out[name] = json.loads(json.dumps(asdict(cls(**sub))))  # tuples and lists compare alike
        except TypeError:
            out[name] = sub
    return out


def _names_with(pred) -> list[str]:
    from .models import register

    register()
    out = []
    for name in open_clip.list_models():
        c = open_clip.get_model_config(name)
        if c is not None and pred(c):
            out.append(name)
    return out


def _describe_config(model_cfg: dict) -> str:
    target = _norm(model_cfg)
    names = _names_with(lambda c: _norm(c) == target)
    return " or ".join(names[:3]) if names else f"a model open_clip does not ship ({json.dumps(model_cfg)[:300]})"


def _count_layers(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in sd if (m := pat.match(k))})


def shape_signature(sd: dict) -> dict | None:
    """Architecture fields readable from a CLIP state dict's shapes (the rules of open_clip's
    build_model_from_openai_state_dict); None for towers it cannot read (timm, HF text)."""
    try:
        conv = sd["visual.conv1.weight"].shape
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return {
            "embed_dim": int(sd["text_projection"].shape[1]),
            "vision": (
                int(conv[0]),
                _count_layers(sd, "visual.transformer.resblocks."),
                int(conv[-1]),
                int(conv[-1]) * grid,
            ),
            "text": (
                int(sd["positional_embedding"].shape[0]),
                int(sd["token_embedding.weight"].shape[0]),
                int(sd["ln_final.weight"].shape[0]),
                _count_layers(sd, "transformer.resblocks."),
            ),
        }
    except (KeyError, IndexError, AttributeError):
        return None


def config_signature(c: dict) -> dict | None:
    v, t = c.get("vision_cfg", {}), c.get("text_cfg", {})
    if "timm_model_name" in v or "hf_model_name" in t or not isinstance(v.get("layers"), int):
        return None
    size = v.get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    try:
        return {
            "embed_dim": int(c["embed_dim"]),
            "vision": (int(v.get("width", 768)), int(v["layers"]), int(v.get("patch_size", 16)), int(size)),
            "text": (
                int(t.get("context_length", 77)),
                int(t.get("vocab_size", 49408)),
                int(t.get("width", 512)),
                int(t.get("layers", 12)),
            ),
        }
    except (KeyError, TypeError, ValueError):
        return None


def looks_like(sd: dict, quick_gelu: bool | None, config: dict | None = None) -> str:
    if config is not None:
        return _describe_config(config["model_cfg"])
    sig = shape_signature(sd)
    if sig is None:
        return "no architecture whose shapes can be read (not a ViT CLIP state dict)"
    names = _names_with(lambda c: config_signature(c) == sig)
    if quick_gelu is not None:
        names = [n for n in names if bool(open_clip.get_model_config(n).get("quick_gelu", False)) == quick_gelu]
    if names:
        return " or ".join(names[:3])
    w, layers, patch, size = sig["vision"]
    ctx, vocab, tw, tl = sig["text"]
    return (
        f"no architecture open_clip ships: embed_dim {sig['embed_dim']}, ViT width {w} x {layers} layers, "
        f"patch {patch} at {size} px, text width {tw} x {tl} layers, context {ctx}, vocab {vocab}"
    )
