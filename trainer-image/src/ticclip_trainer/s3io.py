"""S3 access: one boto3 client per S3Settings (settings.py: endpoint, region, addressing style, retries).

Credentials come from the environment / default chain, never from the plan. Errors are classified:
a missing key is a PermanentError (the plan points at data that does not exist), anything that
looks like the network or the server is a TransientError.
"""

from __future__ import annotations

import io
import logging
import random
import time
from typing import IO

import boto3
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from .errors import PermanentError, TransientError
from .settings import S3Settings

__all__ = ["S3", "S3Settings", "join", "parse_uri"]  # S3Settings lives in settings.py; importers may use either

log = logging.getLogger("ticclip_trainer")

# Multipart above 64 MiB, 64 MiB parts: checkpoints of real models are hundreds of MB.
TRANSFER = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)


def parse_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// uri: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def join(prefix_uri: str, *parts: str) -> str:
    return prefix_uri.rstrip("/") + "/" + "/".join(p.strip("/") for p in parts)


def _no_expect_on_empty_body(request, **_) -> None:
    """An empty-body PUT (a `_SUCCESS` marker) with `Expect: 100-continue` leaves MinIO's reply on the
    pooled connection, and the next request on it waits 30 s for a read timeout; no body, no need."""
    body = request.body
    if isinstance(body, io.BytesIO):  # what boto3 1.40 sends put_object's bytes as
        empty = body.getbuffer().nbytes == 0
    else:
        empty = body is None or (isinstance(body, (bytes, bytearray)) and not body)
    if empty:
        request.headers.pop("Expect", None)


_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class S3:
    def __init__(self, settings: S3Settings):
        cfg = Config(
            region_name=settings.region,
            s3={"addressing_style": settings.boto_addressing_style},
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout,
            read_timeout=60,
        )
        self.client = boto3.client("s3", endpoint_url=settings.endpoint, config=cfg)
        self.client.meta.events.register("before-send.s3.PutObject", _no_expect_on_empty_body)

    def _wrap(self, uri: str, exc: Exception, field: str | None = None):
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in _NOT_FOUND:
                return PermanentError(f"{uri} does not exist ({code})", field)
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                return TransientError(f"{uri}: access denied ({code}); check the credentials")
            return TransientError(f"{uri}: S3 error {code}: {exc}")
        return TransientError(f"{uri}: S3 unreachable: {exc}")

    def exists(self, uri: str) -> bool:
        bucket, key = parse_uri(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except botocore.exceptions.ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return False
            raise self._wrap(uri, e) from e
        except (botocore.exceptions.BotoCoreError, OSError) as e:
            raise self._wrap(uri, e) from e

    def get_bytes(self, uri: str, field: str | None = None) -> bytes:
        return self.open(uri, field).read()

    def open(self, uri: str, field: str | None = None) -> IO[bytes]:
        """A streaming body (file-like, read()) of the object."""
        bucket, key = parse_uri(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
            raise self._wrap(uri, e, field) from e

    def open_stream(
        self, uri: str, field: str | None = None, start: int = 0, retries: int = 8, buffer_size: int = 1 << 20
    ) -> io.BufferedReader:
        """A buffered reader from byte `start` that survives broken connections (see RangeReader)."""
        return io.BufferedReader(RangeReader(self, uri, field, start, retries), buffer_size=buffer_size)

    def download(self, uri: str, path: str, field: str | None = None) -> None:
        bucket, key = parse_uri(uri)
        try:
            self.client.download_file(bucket, key, path, Config=TRANSFER)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
            raise self._wrap(uri, e, field) from e

    def upload(self, path: str, uri: str) -> None:
        bucket, key = parse_uri(uri)
        try:
            self.client.upload_file(path, bucket, key, Config=TRANSFER)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.S3UploadFailedError,
            OSError,
        ) as e:
            raise self._wrap(uri, e) from e

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        bucket, key = parse_uri(uri)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
            raise self._wrap(uri, e) from e

    def delete(self, uri: str) -> None:
        bucket, key = parse_uri(uri)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
            raise self._wrap(uri, e) from e

    def list_keys(self, prefix_uri: str) -> list[str]:
        bucket, prefix = parse_uri(prefix_uri)
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", [])]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
            raise self._wrap(prefix_uri, e) from e
        return keys


# What a body read raises when the connection breaks mid-object: botocore wraps urllib3's errors in
# ResponseStreamingError, a short body is IncompleteReadError, and raw socket errors are OSError.
_STREAM_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionError,
    urllib3.exceptions.HTTPError,
    OSError,
)


class RangeReader(io.RawIOBase):
    """Reads an object from byte `start`; a stream that breaks is reopened at its offset (Range GET,
    If-Match on the first ETag so bytes of two object versions are never spliced) with jittered
    exponential backoff. After `retries` failed reopenings in a row it gives up as a TransientError."""

    def __init__(self, s3: S3, uri: str, field: str | None, start: int, retries: int):
        super().__init__()
        self.s3, self.uri, self.field, self.pos, self.retries = s3, uri, field, start, retries
        self.bucket, self.key = parse_uri(uri)
        self.body = None
        self.etag: str | None = None
        self.reopened = 0  # reopenings after a broken stream (observability, tests)
        self._eof = False

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        kw = {"Bucket": self.bucket, "Key": self.key}
        if self.pos:
            kw["Range"] = f"bytes={self.pos}-"
        if self.etag:
            kw["IfMatch"] = self.etag
        try:
            resp = self.s3.client.get_object(**kw)
        except botocore.exceptions.ClientError as e:
            code = str(e.response.get("Error", {}).get("Code"))
            if code == "InvalidRange":  # started at (or past) the end: nothing left
                self._eof = True
                return
            if code == "PreconditionFailed":
                raise PermanentError(
                    f"{self.uri} changed while it was being read (ETag no longer "
                    f"{self.etag}); slices must not change after _SUCCESS",
                    self.field,
                ) from e
            raise self.s3._wrap(self.uri, e, self.field) from e
        self.etag = self.etag or resp.get("ETag")
        self.body = resp["Body"]

    def readinto(self, b) -> int:
        if self._eof or not len(b):
            return 0
        failures = 0
        while True:
            try:
                if self.body is None:
                    self._open()
                    if self._eof:
                        return 0
                data = self.body.read(len(b))
                n = len(data)
                b[:n] = data
                self.pos += n
                if n == 0:
                    self._eof = True
                return n
            except _STREAM_ERRORS as e:
                self._close_body()
                failures += 1
                if failures > self.retries:
                    raise TransientError(
                        f"{self.uri}: stream broke at byte {self.pos} and could not be "
                        f"reopened after {self.retries} attempts: {e}"
                    ) from e
                delay = min(5.0, 0.1 * 2 ** (failures - 1)) * (0.5 + random.random() / 2)
                log.warning(
                    "%s: stream broke at byte %d (%s); reopening in %.2fs", self.uri, self.pos, type(e).__name__, delay
                )
                time.sleep(delay)
                self.reopened += 1
            except botocore.exceptions.BotoCoreError as e:  # credentials, configuration: not the stream
                raise self.s3._wrap(self.uri, e, self.field) from e

    def _close_body(self) -> None:
        if self.body is not None:
            try:
                self.body.close()
            except Exception:  # noqa: BLE001  closing a broken connection may raise anything
                pass
            self.body = None

    def close(self) -> None:
        self._close_body()
        super().close()
