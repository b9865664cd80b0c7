"""The fast PNG writer produces files any decoder reads back exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from atlasloop.rendering.png import encode_rgb


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (512, 512, 3)])
def test_round_trip_through_pillow(shape):
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_rgb(rgb)))
    assert image.format == "PNG" and image.mode == "RGB"
    assert np.array_equal(np.asarray(image), rgb)


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (512, 512)])
def test_a_grey_picture_is_written_as_greyscale(shape):
    grey = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    encoded = encode_rgb(rgb)
    image = Image.open(io.BytesIO(encoded))
    assert image.format == "PNG" and image.mode == "L"
    assert np.array_equal(np.asarray(image.convert("RGB")), rgb)
    rgb[shape[0] // 2, shape[1] // 2, 1] ^= 1  # one pixel off grey: the whole picture is colour
    image = Image.open(io.BytesIO(encode_rgb(rgb)))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), rgb)


def test_refuses_other_layouts():
    with pytest.raises(ValueError):
        encode_rgb(np.zeros((4, 4), np.uint8))
