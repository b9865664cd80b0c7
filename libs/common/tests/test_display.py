"""Display orientation: radiological by default, letters that match, out-of-range refused."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.display import slice_geometry, take, to_ras


def _marked():
    """RAS volume (i -> right, j -> anterior, k -> superior) with markers on three sides."""
    volume = np.zeros((40, 30, 20), np.uint8)
    volume[35:, 10:20, 10] = 1  # patient right
    volume[10:20, 25:, 10] = 2  # anterior
    volume[10:20, 10, 15:] = 3  # superior (coronal slice j=10)
    return volume


def test_axial_radiological_puts_patient_right_on_the_left_and_anterior_on_top():
    volume = _marked()
    geometry = slice_geometry(volume.shape, np.ones(3), "axial", 10)
    picture = take(volume, geometry)
    assert picture.shape == (30, 40) and geometry.letters == ("R", "L", "A", "P")
    rows, cols = np.nonzero(picture == 1)
    assert cols.max() < 10  # right marker at the image's left
    rows, cols = np.nonzero(picture == 2)
    assert rows.max() < 10  # anterior at the top
    neuro = take(volume, slice_geometry(volume.shape, np.ones(3), "axial", 10, neurological=True))
    assert np.nonzero(neuro == 1)[1].min() >= 30


def test_coronal_has_superior_on_top_and_sagittal_anterior_on_the_left():
    volume = _marked()
    coronal = take(volume, slice_geometry(volume.shape, np.ones(3), "coronal", 10))
    assert coronal.shape == (20, 40) and np.nonzero(coronal == 3)[0].max() < 5
    sagittal_geometry = slice_geometry(volume.shape, np.ones(3), "sagittal", 15)
    sagittal = take(volume, sagittal_geometry)
    assert sagittal_geometry.letters == ("A", "P", "S", "I") and np.nonzero(sagittal == 2)[1].max() < 5


def test_lps_storage_is_viewed_in_ras():
    ras = _marked()
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = ras[::-1, ::-1, :]
    view = to_ras(lps, lps_affine)
    assert np.array_equal(view.array, ras) and np.allclose(np.diag(view.affine)[:3], 1.0)


def test_out_of_range_index_refused():
    with pytest.raises(InvalidInput, match=r"out of range 0\.\.19"):
        slice_geometry((40, 30, 20), np.ones(3), "axial", 20)
