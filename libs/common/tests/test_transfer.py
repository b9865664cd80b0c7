"""The client side of storage's download stream: bytes are handed on as they arrive, and the
stream is trusted only once its checksum trailer matches the bytes and the recorded checksum."""

from __future__ import annotations

import hashlib

import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.common.transfer import download_volume, stream_volume
from atlasloop.common.v1 import common_pb2
from atlasloop.storage.v1 import storage_pb2

DATA = [b"first chunk ", b"second chunk ", b"last"]
SHA = hashlib.sha256(b"".join(DATA)).hexdigest()
REQUEST = storage_pb2.DownloadVolumeRequest(case_id="c")


class _Call:
    """What a server-streaming call returns: an iterator that can be cancelled."""

    def __init__(self, messages):
        self._messages = iter(messages)
        self.cancelled = False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._messages)

    def cancel(self):
        self.cancelled = True


class _Stub:
    def __init__(self, messages):
        self.call = _Call(messages)

    def DownloadVolume(self, request, metadata, timeout):
        return self.call


def _messages(recorded=SHA, trailer=SHA, data=DATA):
    yield storage_pb2.DownloadVolumeResponse(header=common_pb2.ObjectRef(sha256=recorded))
    for chunk in data:
        yield storage_pb2.DownloadVolumeResponse(data=chunk)
    if trailer is not None:
        yield storage_pb2.DownloadVolumeResponse(sha256=trailer)


def test_bytes_arrive_in_order_and_the_header_is_reported():
    headers = []
    assert b"".join(stream_volume(_Stub(_messages()), REQUEST, [], on_header=headers.append)) == b"".join(DATA)
    assert [h.sha256 for h in headers] == [SHA]


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (_messages(trailer=None), "without header or checksum"),
        (_messages(trailer="0" * 64), "do not match"),
        (_messages(recorded="0" * 64), "do not match"),
        (_messages(data=[b"tampered"]), "do not match"),
    ],
)
def test_a_stream_that_does_not_verify_fails_at_its_end_and_leaves_no_file(messages, error, tmp_path):
    messages = list(messages)
    stream = stream_volume(_Stub(messages), REQUEST, [])
    with pytest.raises(InvalidInput, match=error):
        list(stream)
    dest = tmp_path / "v.nii.gz"
    with pytest.raises(InvalidInput, match=error):
        download_volume(_Stub(messages), "c", dest, [])
    assert not dest.exists()


def test_a_reader_that_stops_early_cancels_the_call():
    stub = _Stub(_messages())
    stream = stream_volume(stub, REQUEST, [])
    assert next(stream) == DATA[0]
    stream.close()
    assert stub.call.cancelled
