"""Error detection at voxel and region level on hand-made cases."""

from __future__ import annotations

import numpy as np

from atlasloop.method.detection import detect


def test_one_error_found_one_missed_one_false_alarm():
    shape = (30, 30, 30)
    truth = np.zeros(shape, bool)
    truth[5:25, 5:25, 5:25] = True
    pred = truth.copy()
    pred[5:9, 5:9, 5:9] = False  # missed corner: error A (64 voxels)
    pred[25:28, 10:13, 10:13] = True  # leak: error B (27 voxels)
    attention = np.zeros(shape, bool)
    attention[4:8, 4:8, 4:8] = True  # touches A
    attention[15:18, 15:18, 15:18] = True  # a false alarm inside the organ
    d = detect(attention, pred, truth)
    assert (d.error_regions, d.found_regions, d.attention_regions, d.correct_regions) == (2, 1, 2, 1)
    assert d.region_sensitivity == 0.5 and d.region_precision == 0.5
    assert d.error_voxels == 64 + 27 and d.hit_voxels == 27  # [5:8]^3 of the missed corner
    assert d.voxel_precision == 27 / (64 + 27)


def test_no_errors_and_no_attention_are_undefined_not_nan():
    empty = np.zeros((5, 5, 5), bool)
    d = detect(empty, empty, empty)
    assert d.voxel_sensitivity is None and d.region_precision is None
