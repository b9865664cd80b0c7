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


def _with_header(data: bytes, **changes) -> bytes:
    """``data`` with its header's fields changed and its frames kept."""
    length = struct.unpack_from("<I", data, 8)[0]
    header = json.loads(data[12 : 12 + length]) | changes
    raw = json.dumps(header).encode()
    return data[:8] + struct.pack("<I", len(raw)) + raw + data[12 + length :]


def _v1(volume: Volume) -> bytes:
    """A display copy as version 1 wrote it (one frame), which stores still hold."""
    array = np.ascontiguousarray(volume.array)
    header = json.dumps({"shape": list(array.shape), "dtype": array.dtype.str, "affine": volume.affine.tolist()})
    frame = blosc2.compress2(array.reshape(-1).view(np.uint8), typesize=array.dtype.itemsize)
    return display_copy.MAGIC_V1 + struct.pack("<I", len(header)) + header.encode() + bytes(frame)


def _v2(monkeypatch, volume: Volume, slab: int) -> bytes:
    """A display copy in slabs of ``slab`` planes of the first axis (version 2)."""
    monkeypatch.setattr(display_copy, "SLAB_BYTES", slab * volume.array[0].nbytes)
    data = display_copy.encode(volume, bricks=False)
    assert data.startswith(display_copy.MAGIC_V2) and b'"slab": %d' % slab in data
    return data


def _chunks(data: bytes, size: int):
    """An object store's stream: the bytes in chunks that do not line up with the frames."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    "affine",
    [AFFINE, np.diag([1.0, 1.0, 2.5, 1.0]), np.array([[0, 0, -2.5, 9], [-0.8, 0, 0, 1], [0, 0.8, 0, 3], [0, 0, 0, 1]])],
)
def test_bricks_and_slabs_decode_as_they_stream_in_and_version_1_still_reads(monkeypatch, affine):
    monkeypatch.setattr(display_copy, "BRICK", 8)  # 5 x 4 x 3 bricks, cut at every edge
    array = np.random.default_rng(1).normal(0, 300, (40, 30, 20)).astype(np.int16)
    data = display_copy.encode(Volume(array, affine))
    header = json.loads(data[12 : 12 + struct.unpack_from("<I", data, 8)[0]])
    assert data.startswith(display_copy.MAGIC) and header["brick"] == 8 and len(header["frames"]) == 60
    superior = int(np.argmax(np.abs(affine[2, :3])))
    assert header["order"][0] == superior  # an axial plane's bricks are one range of the object
    for size in (1, 7, 4096, len(data)):
        back = display_copy.decode_stream(_chunks(data, size), "stream")
        assert np.array_equal(back.array, array) and np.array_equal(back.affine, affine)
    assert np.array_equal(display_copy.decode(data, "whole").array, array)
    for old in (_v1(Volume(array, affine)), _v2(monkeypatch, Volume(array, affine), 3)):
        assert np.array_equal(display_copy.decode(old, "old").array, array)
        assert np.array_equal(display_copy.decode_stream(_chunks(old, 1000), "old stream").array, array)


def test_a_layout_places_each_brick_and_finds_a_planes_bricks(monkeypatch):
    monkeypatch.setattr(display_copy, "BRICK", 8)
    array = np.arange(40 * 30 * 20, dtype=np.int32).reshape(40, 30, 20)
    data = display_copy.encode(Volume(array, np.diag([1.0, 1.0, 2.0, 1.0])))
    length = struct.unpack_from("<I", data, 8)[0]
    layout = display_copy.read_header(data[:12], data[12 : 12 + length], "x")
    assert layout.order == (2, 1, 0) and layout.grid == (5, 4, 3) and layout.offsets[-1] == len(data)
    covered = np.zeros(array.shape, int)
    for n in range(len(layout.frames)):
        covered[layout.region(n)] += 1
    assert (covered == 1).all()  # every voxel in exactly one brick
    axial = layout.on_plane(2, 17)  # the slowest axis: one run of 5 x 4 bricks
    assert axial == list(range(40, 60))
    sagittal = layout.on_plane(0, 9)
    assert len(sagittal) == 4 * 3 and all(layout.region(n)[0] == slice(8, 16) for n in sagittal)
    with pytest.raises(ImageError, match="outside the volume"):
        layout.on_plane(1, 30)


def test_a_stream_that_lies_or_breaks_is_refused(monkeypatch):
    monkeypatch.setattr(display_copy, "BRICK", 8)
    data = display_copy.encode(Volume(np.ones((8, 8, 16), np.int16), AFFINE))
    with pytest.raises(ImageError, match="after its last frame"):
        display_copy.decode_stream(_chunks(data + b"x", 5), "trailing")
    with pytest.raises(ImageError, match="cut short"):
        display_copy.decode_stream(_chunks(data[:-3], 5), "cut")
    with pytest.raises(ImageError, match="frames do not cover"):
        display_copy.decode(_with_header(data, brick=16), "frames")
    for bad in ({"brick": 4}, {"brick": 4096}, {"order": [0, 0, 1]}, {"order": [0, 1]}):
        with pytest.raises(ImageError, match="bricks are not ones it may hold"):
            display_copy.decode(_with_header(data, **bad), str(bad))
    old = _v2(monkeypatch, Volume(np.ones((8, 8, 8), np.int16), AFFINE), 2)
    with pytest.raises(ImageError, match="frames do not cover"):
        display_copy.decode(old.replace(b'"slab": 2', b'"slab": 4'), "v2 frames")

    def failing():
        yield data[:30]
        raise ConnectionResetError("the store went away")

    with pytest.raises(ConnectionResetError):
        display_copy.decode_stream(failing(), "broken")
    before = threading.active_count()
    with pytest.raises(ImageError, match="not a display copy"):
        display_copy.decode_stream(_chunks(b"garbage" * 10000, 10), "garbage")  # the reader stops too
    assert threading.active_count() <= before


def test_a_frame_larger_than_any_copy_holds_is_refused_from_the_header():
    data = display_copy.encode(Volume(np.ones((8, 8, 8), np.int16), AFFINE))
    forged = _with_header(data, frames=[display_copy.MAX_FRAME_BYTES + 1])
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
