"""The display-ready copy of a CT: the same voxels and grid back, whatever the dtype and
orientation; everything it claims is checked before anything is decompressed."""

from __future__ import annotations

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
    with pytest.raises(ImageError, match="frame is corrupt"):
        display_copy.decode(data[:-5], "cut in the frame's data")
    forged = data.replace(b'"shape": [8, 8, 8]', b'"shape": [100000, 100000, 100000]')
    with pytest.raises(ImageError):
        display_copy.decode(forged, "absurd")
