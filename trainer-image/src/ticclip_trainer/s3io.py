"""S3 access: one boto3 client per (endpoint, region), path-style for custom endpoints.

Credentials come from the environment / default chain, never from the plan. Errors are classified:
a missing key is a PermanentError (the plan points at data that does not exist), anything that
looks like the network or the server is a TransientError.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from .errors import PermanentError, TransientError

# Multipart above 64 MiB, 64 MiB parts: checkpoints of real models are hundreds of MB.
TRANSFER = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)


def parse_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// uri: {uri}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def join(prefix_uri: str, *parts: str) -> str:
    return prefix_uri.rstrip("/") + "/" + "/".join(p.strip("/") for p in parts)


@dataclass(frozen=True)
class S3Settings:
    region: str
    endpoint: str | None

    @staticmethod
    def from_plan(plan: dict) -> "S3Settings":
        return S3Settings(region=plan["s3"]["region"], endpoint=plan["s3"]["endpoint"])

    @staticmethod
    def from_env() -> "S3Settings":
        return S3Settings(region=os.environ.get("AWS_REGION", "us-east-1"),
                          endpoint=os.environ.get("S3_ENDPOINT") or None)


_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class S3:
    def __init__(self, settings: S3Settings):
        cfg = Config(
            region_name=settings.region,
            s3={"addressing_style": "path"} if settings.endpoint else {},
            retries={"max_attempts": int(os.environ.get("TICCLIP_S3_MAX_ATTEMPTS", "4")), "mode": "standard"},
            connect_timeout=float(os.environ.get("TICCLIP_S3_CONNECT_TIMEOUT", "5")),
            read_timeout=60,
        )
        self.client = boto3.client("s3", endpoint_url=settings.endpoint, config=cfg)

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
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                boto3.exceptions.S3UploadFailedError, OSError) as e:
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
