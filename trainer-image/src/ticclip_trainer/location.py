"""Where slices and eval packs are written: a local folder or an s3:// prefix.

Its own module so that slices.py (which writes eval packs) and evalpack.py (which writes through it)
import it without importing each other.
"""

from __future__ import annotations

import os

from .s3io import S3, S3Settings


class Dest:
    """A local folder or an s3:// prefix."""

    def __init__(self, location: str, s3: S3 | None = None):
        self.location = location.rstrip("/") + "/"
        self.is_s3 = location.startswith("s3://")
        self.s3 = (s3 or S3(S3Settings.from_env())) if self.is_s3 else None

    def put(self, rel: str, data: bytes) -> None:
        if self.is_s3:
            self.s3.put_bytes(self.location + rel, data)
        else:
            path = os.path.join(self.location, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)

    def uri(self, rel: str) -> str:
        return self.location + rel
