"""Model construction: a thin wrapper over open_clip, plus the configs shipped with the trainer.

`ticclip-tiny` (model_configs/ticclip-tiny.json) is a ~3.5M parameter CLIP, most of it the
49408-token embedding, that trains on CPU in seconds; the tests and the CPU benchmark use it.
"""

from __future__ import annotations

from importlib import resources

import open_clip

TINY = "ticclip-tiny"
_registered = False


def register() -> None:
    """Add our model_configs/ folder to open_clip's registry (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(str(resources.files(__package__).joinpath("model_configs")))
        _registered = True


def known_architecture(name: str) -> bool:
    register()
    return name in open_clip.list_models()


def create(name: str, device: str = "cpu"):
    """Model with random init, fp32 weights (autocast handles reduced precision)."""
    register()
    return open_clip.create_model(name, pretrained=None, device=device)


def model_config(name: str) -> dict:
    register()
    return open_clip.get_model_config(name)
