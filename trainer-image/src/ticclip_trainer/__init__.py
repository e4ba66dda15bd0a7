"""ticclip_trainer: warm-started continual CLIP training rounds on open_clip (see README.md)."""
