"""Uploads in flight: a stream becomes a staged object only once it is complete and verified.

The bytes go to a local temporary file while they arrive (never into memory whole); the stream is
refused as soon as it passes the declared size or the service's maximum; when it ends, its length
and SHA-256 must match the header. Only then is it copied to ``staging/<upload_id>``, so an upload
cut off midway leaves nothing in the object store.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePath

from atlasloop.common import ids, layout
from atlasloop.common.errors import Conflict, InvalidInput, NotFound, TooLarge
from atlasloop.common.objectstore import ObjectStore, StoredObject

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class UploadHeader:
    file_name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class StagedUpload:
    upload_id: str
    file_name: str
    object: StoredObject


class Staging:
    """Receives uploads, hands out presigned PUTs, and fetches staged files for import."""

    def __init__(
        self, store: ObjectStore, max_upload_bytes: int, max_chunk_bytes: int, temp_dir: str | None = None
    ) -> None:
        self._store = store
        self._max = max_upload_bytes
        self._max_chunk = max_chunk_bytes
        self._temp_dir = temp_dir

    def check_header(self, header: UploadHeader) -> UploadHeader:
        name = PurePath(header.file_name).name
        if not name or name != header.file_name or name in (".", ".."):
            raise InvalidInput(f"file name {header.file_name[:80]!r} must be a plain name without folders")
        if header.size_bytes <= 0:
            raise InvalidInput("upload header must give the file's size in bytes")
        if header.size_bytes > self._max:
            raise TooLarge(f"upload of {header.size_bytes:,} bytes is over the limit of {self._max:,}")
        if not SHA256_HEX.match(header.sha256):
            raise InvalidInput("upload header must give the file's SHA-256 as 64 lower-case hex digits")
        return header

    def receive(self, header: UploadHeader, chunks: Iterator[bytes]) -> StagedUpload:
        """Consume the data chunks of an upload whose header was already read."""
        header = self.check_header(header)
        digest = hashlib.sha256()
        received = 0
        with tempfile.NamedTemporaryFile(dir=self._temp_dir, prefix="atlasloop-upload-") as handle:
            for chunk in chunks:
                if len(chunk) > self._max_chunk:
                    raise InvalidInput(f"chunk of {len(chunk):,} bytes is over the limit of {self._max_chunk:,}")
                received += len(chunk)
                if received > header.size_bytes:
                    raise TooLarge(f"stream carries more than the {header.size_bytes:,} bytes its header declared")
                digest.update(chunk)
                handle.write(chunk)
            if received != header.size_bytes:
                raise InvalidInput(f"stream ended early: {received:,} of {header.size_bytes:,} bytes arrived")
            if digest.hexdigest() != header.sha256:
                raise InvalidInput("checksum mismatch: the bytes received do not have the SHA-256 in the header")
            handle.flush()
            upload_id = ids.new_upload_id()
            stored = self._store.put_file(
                layout.staging_key(upload_id), Path(handle.name), metadata={"file-name": header.file_name}
            )
        return StagedUpload(upload_id, header.file_name, stored)

    def presign_post(self, file_name: str, expires: timedelta, max_bytes: int) -> tuple[str, str, dict[str, str], int]:
        """A new upload id and the form to POST its bytes with, the store refusing more than
        ``max_bytes`` (at most the upload limit); the file name travels in a sidecar."""
        if not file_name or PurePath(file_name).name != file_name:
            raise InvalidInput("file name must be a plain name without folders")
        if max_bytes < 0:
            raise InvalidInput("max_bytes must be >= 0")
        limit = min(max_bytes or self._max, self._max)
        upload_id = ids.new_upload_id()
        self._store.put_json(layout.staging_meta_key(upload_id), {"file_name": file_name})
        url, fields = self._store.presign_post(layout.staging_key(upload_id), expires, limit)
        return upload_id, url, fields, limit

    def file_name(self, upload_id: str) -> str:
        key = layout.staging_key(ids.validate_upload_id(upload_id))
        name = self._store.stat(key).metadata.get("file-name")
        if name:
            return name
        try:
            sidecar = self._store.get_json(key + ".json")
        except NotFound:
            raise NotFound(f"upload {upload_id} has no file name") from None
        return str(sidecar["file_name"])

    @contextmanager
    def fetched(self, upload_id: str) -> Iterator[Path]:
        """The staged file in a private temporary folder, under its original name."""
        name = PurePath(self.file_name(upload_id)).name
        with tempfile.TemporaryDirectory(dir=self._temp_dir, prefix="atlasloop-import-") as folder:
            path = Path(folder) / name
            self._store.download_file(layout.staging_key(upload_id), path, max_bytes=self._max)
            yield path

    def receipt(self, upload_id: str, author: str) -> dict | None:
        """What ``upload_id`` already became, if a request that used it got as far as writing
        (``layout.upload_receipt_key``); an upload used by someone else is refused."""
        try:
            receipt = self._store.get_json(layout.upload_receipt_key(ids.validate_upload_id(upload_id)))
        except NotFound:
            return None
        if receipt.get("author") != author:
            raise Conflict(f"upload {upload_id} was already used by another caller")
        return dict(receipt)

    def discard(self, upload_id: str) -> None:
        key = layout.staging_key(upload_id)
        for k in (key, key + ".json"):
            self._store.delete(k)
