"""A CT stored in another orientation: the identity tests of imported members run on it too."""

from __future__ import annotations

import nibabel as nib
import numpy as np


def turned_copy(source, out):
    """The same scan stored with its axes permuted and two of them flipped (the same world)."""
    image = nib.load(source)
    array = np.asarray(image.dataobj, dtype=np.float32)
    turned = np.flip(array.transpose(2, 0, 1), axis=(0, 2))
    affine = image.affine[:, [2, 0, 1, 3]].copy()
    for axis in (0, 2):
        affine[:3, 3] += affine[:3, axis] * (turned.shape[axis] - 1)
        affine[:3, axis] *= -1
    nib.save(nib.Nifti1Image(turned, affine), out)
    return out
