"""Client side of the storage service's chunked transfer: upload a file, download a volume.

Used by the ``atlasloop`` command, by services that read volumes (rendering, tracking, inference)
and by the tests. Downloads verify the trailer's SHA-256 against both the bytes received and the
header's recorded checksum; a mismatch or a stream that ends without a trailer is an error and the
partial file is removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from atlasloop.common.errors import InvalidInput
from atlasloop.common.objectstore import sha256_file
from atlasloop.common.v1 import common_pb2
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

DEFAULT_CHUNK = 1024 * 1024
Metadata = Sequence[tuple[str, str]]


def upload_requests(
    path: Path, chunk_bytes: int = DEFAULT_CHUNK, file_name: str | None = None
) -> Iterator[storage_pb2.UploadVolumeRequest]:
    """The header, then the file in chunks."""
    header = storage_pb2.UploadHeader(
        file_name=file_name or path.name, size_bytes=path.stat().st_size, sha256=sha256_file(path)
    )
    yield storage_pb2.UploadVolumeRequest(header=header)
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            yield storage_pb2.UploadVolumeRequest(data=chunk)


def upload_file(
    stub: storage_pb2_grpc.StorageServiceStub,
    path: Path,
    metadata: Metadata,
    chunk_bytes: int = DEFAULT_CHUNK,
    timeout_s: float = 600,
) -> str:
    """Upload ``path`` into staging; returns the upload id."""
    reply = stub.UploadVolume(upload_requests(path, chunk_bytes), metadata=metadata, timeout=timeout_s)
    return str(reply.upload_id)


def stream_volume(
    stub: storage_pb2_grpc.StorageServiceStub,
    request: storage_pb2.DownloadVolumeRequest,
    metadata: Metadata,
    timeout_s: float = 600,
    on_header: Callable[[common_pb2.ObjectRef], None] | None = None,
) -> Iterator[bytes]:
    """A case volume's bytes as they arrive. The checksum is verified when the stream ends, so a
    consumer must read to the end (and discard what it made) before trusting the bytes: the last
    step raises ``InvalidInput`` when they do not match. Closing the iterator early cancels the call."""
    digest = hashlib.sha256()
    header: common_pb2.ObjectRef | None = None
    trailer = ""
    call = stub.DownloadVolume(request, metadata=metadata, timeout=timeout_s)
    try:
        for message in call:
            part = message.WhichOneof("part")
            if part == "header":
                header = message.header
                if on_header is not None:
                    on_header(header)
            elif part == "data":
                if header is None:
                    raise InvalidInput("download sent data before its header")
                digest.update(message.data)
                yield message.data
            else:
                trailer = message.sha256
    finally:
        call.cancel()  # no-op once the stream has ended
    if header is None or not trailer:
        raise InvalidInput("download ended without header or checksum trailer")
    if not (digest.hexdigest() == trailer == header.sha256):
        raise InvalidInput("downloaded bytes do not match the recorded checksum")


def download_volume(
    stub: storage_pb2_grpc.StorageServiceStub,
    case_id: str,
    dest: Path,
    metadata: Metadata,
    kind: common_pb2.VolumeKind = common_pb2.VOLUME_KIND_CT,
    label_version: str = "",
    chunk_bytes: int = 0,
    timeout_s: float = 600,
    display_copy: bool = False,
) -> common_pb2.ObjectRef:
    """Stream a case volume into ``dest``; returns the object reference after verifying it. A
    download that fails or does not match its checksum leaves no file. ``display_copy``: its
    display-ready copy (``atlasloop.imaging.display_copy``) instead of the NIfTI."""
    request = storage_pb2.DownloadVolumeRequest(
        case_id=case_id, kind=kind, label_version=label_version, chunk_bytes=chunk_bytes, display_copy=display_copy
    )
    headers: list[common_pb2.ObjectRef] = []
    try:
        with dest.open("wb") as handle:
            for data in stream_volume(stub, request, metadata, timeout_s, headers.append):
                handle.write(data)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return headers[0]
