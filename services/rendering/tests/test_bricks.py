"""A display copy read brick by brick: a plane's bricks and only those, the same voxels as the whole
copy in any orientation (cut from the plane's bricks, from the whole array once gathered, and from
a mix of both), each brick loaded once however many pictures ask at the same time, and a failed
load retried by the next caller. The copies are real encodes; ``fetch`` reads their bytes as a
ranged GET would (the service's tests read them from SeaweedFS)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from atlasloop.imaging import display_copy
from atlasloop.imaging.display import to_ras
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.volume import Volume
from atlasloop.rendering import bricks
from atlasloop.rendering.bricks import DECODED, DONE, MISSING, BrickedVolume

ORIENTATIONS = [
    np.diag([0.8, 0.8, 2.5, 1.0]),  # RAS
    np.array([[-0.8, 0, 0, 100.0], [0, 0, 2.5, -40.0], [0, 0.8, 0, 12.0], [0, 0, 0, 1]]),  # axes swapped, flipped
    np.array([[0, 0, -2.5, 9], [-0.8, 0, 0, 1], [0, -0.8, 0, 3], [0, 0, 0, 1]]),
]


class Recorded:
    """A copy's bytes read by ranges, each range recorded (and one made to fail when asked)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ranges: list[tuple[int, int]] = []
        self.fail_at: int | None = None  # a range starting here raises once
        self._lock = threading.Lock()

    def __call__(self, offset: int, length: int) -> bytes:
        with self._lock:
            if offset == self.fail_at:
                self.fail_at = None
                raise ConnectionResetError("the store went away")
            self.ranges.append((offset, length))
        return self.data[offset : offset + length]


def _copy(monkeypatch, affine, shape=(40, 30, 20), seed=0):
    monkeypatch.setattr(display_copy, "BRICK", 8)
    array = np.random.default_rng(seed).integers(-1000, 1000, shape).astype(np.int16)
    return array, Recorded(display_copy.encode(Volume(array, affine)))


def _volume(fetch: Recorded) -> BrickedVolume:
    return BrickedVolume(bricks.read_layout(fetch, "copy")[0], fetch, "copy")


def _plane(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    cut = [slice(None)] * 3
    cut[axis] = slice(index, index + 1)
    return array[tuple(cut)]


@pytest.mark.parametrize("affine", ORIENTATIONS)
def test_each_plane_and_the_whole_volume_match_the_copy(monkeypatch, affine):
    array, fetch = _copy(monkeypatch, affine)
    expected = to_ras(array, affine).array
    for axis in range(3):
        for index in (0, 7, 8, expected.shape[axis] - 1):
            volume = _volume(fetch)
            assert np.array_equal(volume.plane(axis, index), _plane(expected, axis, index))  # from its bricks
            assert not volume.complete
            volume.ensure_all()
            assert volume.complete and not volume._decoded
            assert np.array_equal(volume.plane(axis, index), _plane(expected, axis, index))  # from the array
    whole = _volume(fetch).ensure_all()
    assert np.array_equal(whole.array, expected) and np.allclose(whole.affine, to_ras(array, affine).affine)


def test_a_plane_reads_only_its_bricks_and_an_axial_plane_is_one_range(monkeypatch):
    array, fetch = _copy(monkeypatch, ORIENTATIONS[1], shape=(40, 30, 64))
    volume = _volume(fetch)
    header_reads = len(fetch.ranges)
    expected = to_ras(array, ORIENTATIONS[1]).array
    assert np.array_equal(volume.plane(2, 11), _plane(expected, 2, 11))  # axial: stored axis 1 is slowest
    layout = volume.layout
    stored = layout.on_plane(1, 11)
    assert np.flatnonzero(volume._state == DECODED).tolist() == stored and len(stored) == 5 * 8
    assert np.count_nonzero(volume._state == MISSING) == len(layout.frames) - len(stored)
    assert len(fetch.ranges) - header_reads == 1  # one contiguous range
    read = fetch.ranges[-1][1]
    assert read == layout.offsets[stored[-1] + 1] - layout.offsets[stored[0]] < len(fetch.data) / 3
    volume.plane(2, 12)  # the same layer of bricks: nothing more is read
    assert len(fetch.ranges) - header_reads == 1
    # a plane crossing it is cut from bricks already decoded and bricks read for it
    assert np.array_equal(volume.plane(0, 30), _plane(expected, 0, 30))
    volume.ensure_all()
    assert volume.complete and np.array_equal(volume.volume.array, expected) and not volume._decoded
    fetched = sum(length for _, length in fetch.ranges[header_reads:])
    assert fetched == layout.offsets[-1] - layout.offsets[0]  # every brick read once, none twice


def test_many_readers_at_once_load_each_brick_once(monkeypatch):
    monkeypatch.setattr(bricks, "RANGE_BYTES", 2048)  # many small ranges, to interleave the threads
    array, fetch = _copy(monkeypatch, ORIENTATIONS[2], shape=(48, 40, 32), seed=3)
    volume = _volume(fetch)
    header_reads = len(fetch.ranges)
    rng = np.random.default_rng(4)
    jobs = [(int(a), int(rng.integers(0, volume.volume.array.shape[a]))) for a in rng.integers(0, 3, 24)]
    errors: list[BaseException] = []
    expected = to_ras(array, ORIENTATIONS[2]).array

    def picture(axis: int, index: int) -> None:
        try:
            if not np.array_equal(volume.plane(axis, index), _plane(expected, axis, index)):
                errors.append(AssertionError(f"plane {axis} {index} differs"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=picture, args=job) for job in jobs]
    threads += [threading.Thread(target=volume.ensure_all) for _ in range(2)]  # two whole-volume readers
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and volume.complete and (volume._state == DONE).all()
    assert np.array_equal(volume.volume.array, expected)
    starts = [offset for offset, _ in fetch.ranges[header_reads:]]
    assert len(starts) == len(set(starts))  # no range read twice
    total = sum(length for _, length in fetch.ranges[header_reads:])
    assert total == volume.layout.offsets[-1] - volume.layout.offsets[0]


def test_a_failed_read_is_reported_and_the_next_picture_retries(monkeypatch):
    array, fetch = _copy(monkeypatch, ORIENTATIONS[0])
    volume = _volume(fetch)
    layout = volume.layout
    fetch.fail_at = int(layout.offsets[layout.on_plane(2, 5)[0]])
    with pytest.raises(ConnectionResetError):
        volume.plane(2, 5)
    assert not (volume._state == bricks.LOADING).any()  # nothing left claimed by the failed load
    assert np.array_equal(volume.plane(2, 5), _plane(to_ras(array, ORIENTATIONS[0]).array, 2, 5))


def test_a_copy_shorter_or_other_than_its_header_says_is_refused(monkeypatch):
    _array, fetch = _copy(monkeypatch, ORIENTATIONS[0])
    short = Recorded(fetch.data[:-100])
    volume = _volume(short)
    with pytest.raises(ImageError, match="shorter than its header says"):
        volume.ensure_all()
    with pytest.raises(ImageError, match="not a display copy"):
        bricks.read_layout(Recorded(b"\x1f\x8b" + fetch.data), "gzip")
    corrupt = bytearray(fetch.data)
    layout = _volume(fetch).layout
    corrupt[int(layout.offsets[0]) : int(layout.offsets[0]) + 16] = b"\xff" * 16
    with pytest.raises(ImageError, match="frame"):
        _volume(Recorded(bytes(corrupt))).plane(0, 0)
    with pytest.raises(ImageError, match="outside the volume"):
        _volume(fetch).plane(0, 40)
