"""Window, contours on the organ's own pixels, an empty heatmap that draws nothing, aspect."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.rendering import layers


def test_window_width_must_be_positive_and_presets_exist():
    with pytest.raises(InvalidInput, match="width"):
        layers.Window.of("", 40, 0)
    assert layers.Window.of("", 0, 0) == layers.Window(40, 400)  # nothing given: abdomen
    assert layers.Window.of("bone", 0, 0) == layers.Window(400, 1800)


def test_contours_lie_on_the_organ_boundary():
    labels = np.zeros((20, 20), np.uint8)
    labels[5:15, 5:15] = 5
    rgb = np.zeros((20, 20, 3), np.float32)
    layers.draw_labels(rgb, labels, "contour")
    drawn = rgb.any(axis=2)
    interior = np.zeros_like(drawn)
    interior[6:14, 6:14] = True
    assert drawn[5, 5:15].all() and not (drawn & interior).any() and not drawn[labels == 0].any()
    assert drawn.sum() == 36  # the square's one-pixel ring: 4 * 10 - 4


def test_empty_heat_draws_nothing():
    rgb = np.full((10, 10, 3), 77.0, np.float32)
    layers.draw_heat(rgb, np.zeros((10, 10)), (10, 10))
    assert np.all(rgb == 77.0)
    layers.draw_heat(rgb, np.pad(np.ones((2, 2)), 4), (10, 10))
    assert not np.all(rgb == 77.0)


def test_square_pixels_and_size_limit():
    assert layers.output_size((100, 200), 2.0, 1.0, 0) == (200, 200)
    assert layers.output_size((512, 512), 0.8, 0.8, 256) == (256, 256)


def test_a_small_slice_is_enlarged_to_the_minimum_and_labels_stay_sharp():
    # a 3 mm case slice (122 x 101 voxels): long side to 512, square pixels kept
    assert layers.output_size((101, 122), 3.0, 3.0, 1024, 512) == (512, 424)
    assert layers.output_size((101, 122), 3.0, 3.0, 512, 512) == (512, 424)
    assert layers.output_size((600, 400), 1.0, 1.0, 0, 512) == (400, 600)  # already large enough
    labels = np.zeros((4, 4), np.uint8)
    labels[1:3, 1:3] = 5
    assert set(np.unique(layers.resize_labels(labels, (16, 16)))) == {0, 5}  # nearest: no mixed ids
