"""Upload refusals happen before anything reaches the object store (a store that fails on use)."""

from __future__ import annotations

import hashlib

import pytest

from atlasloop.common.errors import InvalidInput, TooLarge
from atlasloop.storage.staging import Staging, UploadHeader


class _NoStore:
    """Stands for the object store in refusals: any use would be a bug, so it raises."""

    def __getattr__(self, name):
        raise AssertionError(f"object store touched ({name}) by a refused upload")


def _staging(max_bytes=1000, max_chunk=100):
    return Staging(_NoStore(), max_bytes, max_chunk)


def _header(data: bytes, size=None, name="ct.nii.gz"):
    return UploadHeader(name, len(data) if size is None else size, hashlib.sha256(data).hexdigest())


def test_oversized_header_refused_before_reading():
    def never():
        raise AssertionError("stream read")
        yield b""

    with pytest.raises(TooLarge, match="over the limit"):
        _staging().receive(_header(b"x", size=10_000), never())


def test_stream_longer_than_declared_refused_at_once():
    read = []

    def chunks():
        for i in range(50):
            read.append(i)
            yield b"x" * 50

    with pytest.raises(TooLarge, match="more than"):
        _staging().receive(_header(b"x" * 100), chunks())
    assert len(read) == 3  # stopped at the chunk that passed the declared size


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([b"x" * 40], "ended early"),
        ([b"y" * 100], "checksum mismatch"),
        ([b"x" * 101], "chunk of 101 bytes"),
    ],
)
def test_bad_streams_refused(chunks, message):
    with pytest.raises((InvalidInput, TooLarge), match=message):
        _staging(max_chunk=100).receive(_header(b"x" * 100), iter(chunks))


@pytest.mark.parametrize("name", ["../ct.nii.gz", "a/b.nii.gz", "", ".."])
def test_file_names_with_folders_refused(name):
    with pytest.raises(InvalidInput):
        _staging().check_header(_header(b"x", name=name))
