"""The object-store client: the S3 API through the ``minio`` client only.

MinIO in production and SeaweedFS locally take the same code path. Objects carry their SHA-256
in user metadata (``x-amz-meta-sha256``) so readers can verify what they fetched.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.datatypes import PostPolicy
from minio.error import S3Error

from atlasloop.common.errors import NotFound, NotReady, TooLarge
from atlasloop.common.settings import S3Settings

log = logging.getLogger(__name__)

PART_SIZE = 16 * 1024 * 1024
SHA256_META = "sha256"


@dataclass(frozen=True)
class StoredObject:
    """An object's key, size and checksum, as stored."""

    bucket: str
    key: str
    sha256: str
    size_bytes: int
    metadata: dict[str, str] = field(default_factory=dict, compare=False)


class HashingReader(io.RawIOBase):
    """Wrap a binary stream and hash what is read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def sha256_file(path: Path, block: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class ObjectStore:
    """One bucket on an S3 endpoint."""

    def __init__(self, settings: S3Settings) -> None:
        self.bucket = settings.bucket
        self._settings = settings
        # a private CA (secure endpoints inside a hospital) is trusted by file; else the system's
        verify: dict[str, Any] = (
            {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(settings.ca_file)} if settings.ca_file else {}
        )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.timeout_s, read=max(settings.timeout_s, 60)),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
            maxsize=16,
            **verify,
        )
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )
        # Health probes use a client that fails fast and never retries.
        self._probe = Minio(
            settings.endpoint,
            access_key=settings.access_key.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=1.5, read=3), retries=False, maxsize=4, **verify
            ),
        )

    def check_bucket(self) -> None:
        """Readiness probe: the endpoint answers and the bucket exists (created when allowed).

        Creating it here rather than at start lets a service start before its S3 endpoint and
        become ready once the endpoint answers.
        """
        if self._probe.bucket_exists(self.bucket):
            return
        if not self._settings.create_bucket:
            raise NotReady(f"bucket {self.bucket!r} does not exist and create_bucket is off")
        try:
            self._probe.make_bucket(self.bucket)
        except S3Error as exc:  # another probe or replica created it between our two calls
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        log.info("created bucket", extra={"bucket": self.bucket})

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        length: int = -1,
        sha256: str | None = None,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        """Upload a stream (multipart when large); returns its checksum as received."""
        reader = HashingReader(stream)
        headers: dict[str, str | list[str] | tuple[str]] = {**(metadata or {})}
        if sha256:
            headers[SHA256_META] = sha256
        self.client.put_object(
            self.bucket,
            key,
            reader,  # type: ignore[arg-type]  # read(n) is all minio uses of a stream
            length=length,
            part_size=PART_SIZE,
            content_type=content_type,
            metadata=headers or None,
        )
        return StoredObject(self.bucket, key, reader.sha256.hexdigest(), reader.size)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        return self.put_stream(key, io.BytesIO(data), len(data), digest, content_type)

    def put_file(self, key: str, path: Path, metadata: dict[str, str] | None = None) -> StoredObject:
        digest = sha256_file(path)
        with path.open("rb") as handle:
            return self.put_stream(key, handle, path.stat().st_size, digest, metadata=metadata)

    def put_json(self, key: str, value: object) -> StoredObject:
        return self.put_bytes(key, json.dumps(value, indent=2, sort_keys=True).encode(), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def stat(self, key: str) -> StoredObject:
        try:
            info = self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise NotFound(f"object {key!r} does not exist") from None
            raise
        meta = {
            k.lower().removeprefix("x-amz-meta-"): v
            for k, v in (info.metadata or {}).items()
            if k.lower().startswith("x-amz-meta-")
        }
        return StoredObject(self.bucket, key, meta.get(SHA256_META, ""), int(info.size or 0), meta)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def iter_chunks(self, key: str, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        """Stream an object's bytes in chunks of at most ``chunk_bytes``."""
        response = self._open(key)
        try:
            yield from response.stream(chunk_bytes)
        finally:
            response.close()
            response.release_conn()

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_chunks(key))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only where the object ends): a ranged GET."""
        if offset < 0 or length < 1:
            raise ValueError("a range starts at 0 or later and holds at least one byte")
        response = self._open(key, offset, length)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def _open(self, key: str, offset: int = 0, length: int = 0) -> Any:
        """The GET's response (``length`` 0: to the end)."""
        try:
            return self.client.get_object(self.bucket, key, offset=offset, length=length)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise NotFound(f"object {key!r} does not exist") from None
            raise

    def download_file(self, key: str, path: Path, max_bytes: int | None = None) -> StoredObject:
        """Copy an object to a local file, refusing (before reading it) one over ``max_bytes``."""
        if max_bytes is not None:
            size = self.stat(key).size_bytes
            if size > max_bytes:
                raise TooLarge(f"object {key!r} is {size:,} bytes, over the limit of {max_bytes:,}")
        digest = hashlib.sha256()
        size = 0
        with path.open("wb") as handle:
            for chunk in self.iter_chunks(key):
                digest.update(chunk)
                size += len(chunk)
                handle.write(chunk)
        return StoredObject(self.bucket, key, digest.hexdigest(), size)

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def list_prefixes(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """The 'folders' right under ``prefix`` (keys up to the next '/'), in key order."""
        for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=False, start_after=start_after):
            if item.is_dir:
                yield item.object_name

    def list_keys(self, prefix: str) -> list[str]:
        return [o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)]

    def presign_get(self, key: str, expires: timedelta) -> str:
        return self.client.presigned_get_object(self.bucket, key, expires=expires)

    def presign_put(self, key: str, expires: timedelta) -> str:
        return self.client.presigned_put_object(self.bucket, key, expires=expires)

    def presign_post(self, key: str, expires: timedelta, max_bytes: int) -> tuple[str, dict[str, str]]:
        """A browser-style upload (multipart/form-data POST to the URL, these fields, then the file as
        ``file``) of exactly ``key``, refused by the store itself above ``max_bytes``: a presigned PUT
        cannot carry a size limit, a POST policy can (``content-length-range``)."""
        policy = PostPolicy(self.bucket, datetime.now(UTC).replace(tzinfo=None) + expires)
        policy.add_equals_condition("key", key)
        policy.add_content_length_range_condition(1, max_bytes)
        fields = {str(k): str(v) for k, v in self.client.presigned_post_policy(policy).items()}
        fields["key"] = key
        scheme = "https" if self._settings.secure else "http"
        return f"{scheme}://{self._settings.endpoint}/{self.bucket}/", fields
