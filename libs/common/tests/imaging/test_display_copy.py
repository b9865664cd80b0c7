"""The display-ready copy of a CT: the same voxels and grid back, whatever the dtype and
orientation; everything it claims is checked before anything is decompressed."""

from __future__ import annotations

import json
import struct
import threading

import blosc2
import numpy as np
import pytest

from atlasloop.imaging import display_copy
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.volume import Volume

AFFINE = np.array([[-0.8, 0, 0, 100.0], [0, 0, 2.5, -40.0], [0, 0.8, 0, 12.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_a_volume_comes_back_exactly(dtype):
    array = (np.random.default_rng(0).normal(0, 300, (40, 30, 20))).astype(dtype)
    back = display_copy.decode(display_copy.encode(Volume(array, AFFINE)), "x")
    assert back.array.dtype == array.dtype and np.array_equal(back.array, array)
    assert np.array_equal(back.affine, AFFINE) and back.array.flags.writeable


def test_what_it_claims_is_checked_first():
    data = display_copy.encode(Volume(np.ones((8, 8, 8), np.int16), AFFINE))
    big = display_copy.encode(Volume(np.ones((64, 64, 64), np.int16), AFFINE))
    head = data.index(b"}") + 1
    with pytest.raises(ImageError, match="frame holds 524,288 bytes, its header says 1,024"):
        display_copy.decode(data[:head] + big[big.index(b"}") + 1 :], "bomb")
    with pytest.raises(ImageError, match="not a display copy"):
        display_copy.decode(b"\x1f\x8b" + data, "gzip")
    with pytest.raises(ImageError, match="header is truncated"):
        display_copy.decode(data[:20], "cut")
    with pytest.raises(ImageError, match="frame is not readable"):
        display_copy.decode(data[: head + 10], "cut in the frame's header")
    with pytest.raises(ImageError, match="frame is cut short"):
        display_copy.decode(data[:-5], "cut in the frame's data")
    forged = data.replace(b'"shape": [8, 8, 8]', b'"shape": [100000, 100000, 100000]')
    with pytest.raises(ImageError):
        display_copy.decode(forged, "absurd")


def _v1(volume: Volume) -> bytes:
    """A display copy as version 1 wrote it (one frame), which stores still hold."""
    array = np.ascontiguousarray(volume.array)
    header = json.dumps({"shape": list(array.shape), "dtype": array.dtype.str, "affine": volume.affine.tolist()})
    frame = blosc2.compress2(array.reshape(-1).view(np.uint8), typesize=array.dtype.itemsize)
    return display_copy.MAGIC_V1 + struct.pack("<I", len(header)) + header.encode() + bytes(frame)


def _chunks(data: bytes, size: int):
    """An object store's stream: the bytes in chunks that do not line up with the frames."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_frames_decode_as_they_stream_in_and_version_1_still_reads(monkeypatch):
    monkeypatch.setattr(display_copy, "SLAB_BYTES", 3 * 30 * 20 * 2)  # three planes per frame
    array = np.random.default_rng(1).normal(0, 300, (40, 30, 20)).astype(np.int16)
    data = display_copy.encode(Volume(array, AFFINE))
    header = json.loads(data[12 : 12 + struct.unpack_from("<I", data, 8)[0]])
    assert data.startswith(display_copy.MAGIC) and header["slab"] == 3 and len(header["frames"]) == 14
    for size in (1, 7, 4096, len(data)):
        back = display_copy.decode_stream(_chunks(data, size), "stream")
        assert np.array_equal(back.array, array) and np.array_equal(back.affine, AFFINE)
    assert np.array_equal(display_copy.decode(data, "whole").array, array)
    old = _v1(Volume(array, AFFINE))
    assert np.array_equal(display_copy.decode(old, "v1").array, array)
    assert np.array_equal(display_copy.decode_stream(_chunks(old, 1000), "v1 stream").array, array)


def test_a_stream_that_lies_or_breaks_is_refused(monkeypatch):
    monkeypatch.setattr(display_copy, "SLAB_BYTES", 8 * 8 * 2 * 2)
    data = display_copy.encode(Volume(np.ones((8, 8, 8), np.int16), AFFINE))
    with pytest.raises(ImageError, match="after its last frame"):
        display_copy.decode_stream(_chunks(data + b"x", 5), "trailing")
    with pytest.raises(ImageError, match="cut short"):
        display_copy.decode_stream(_chunks(data[:-3], 5), "cut")
    fewer = data.replace(b'"slab": 2', b'"slab": 4')
    with pytest.raises(ImageError, match="frames do not cover"):
        display_copy.decode(fewer, "frames")

    def failing():
        yield data[:30]
        raise ConnectionResetError("the store went away")

    with pytest.raises(ConnectionResetError):
        display_copy.decode_stream(failing(), "broken")
    before = threading.active_count()
    with pytest.raises(ImageError, match="not a display copy"):
        display_copy.decode_stream(_chunks(b"garbage" * 10000, 10), "garbage")  # the reader stops too
    assert threading.active_count() <= before


def test_a_frame_larger_than_any_copy_holds_is_refused_from_the_header(monkeypatch):
    monkeypatch.setattr(display_copy, "SLAB_BYTES", 8 * 8 * 2 * 2)
    data = display_copy.encode(Volume(np.ones((8, 8, 8), np.int16), AFFINE))
    length = struct.unpack_from("<I", data, 8)[0]
    header = json.loads(data[12 : 12 + length])
    header["frames"][0] = display_copy.MAX_FRAME_BYTES + 1
    raw = json.dumps(header).encode()
    forged = display_copy.MAGIC + struct.pack("<I", len(raw)) + raw + data[12 + length :]
    with pytest.raises(ImageError, match="larger than any it may hold"):
        display_copy.decode(forged, "huge frame")


def test_a_reader_that_stops_early_closes_the_stream():
    data = display_copy.encode(Volume(np.ones((8, 8, 8), np.int16), AFFINE))
    closed = threading.Event()

    def stream():
        try:
            yield b"garbage" * 10
            while True:  # a long download the reader no longer wants
                yield b"x" * 1000
        finally:
            closed.set()

    held = stream()  # held here, so that only the reader can close it
    with pytest.raises(ImageError, match="not a display copy"):
        display_copy.decode_stream(held, "stopped")
    assert closed.is_set()
    assert np.array_equal(display_copy.decode_stream(_chunks(data, 9), "whole").array, np.ones((8, 8, 8)))
