"""How well attention finds real errors: sensitivity and precision against the truth.

The true error of an organ is where the pseudo-label and the ground truth disagree. Voxel level:
sensitivity = |A & E| / |E|, precision = |A & E| / |A|. Region level (the unit a person revises):
an error component (26-connected) counts as found when the attention region touches it (overlaps
it or lies next to it); an attention component counts as correct when it touches an error.
Undefined ratios (no errors, or no attention) are reported as None, never as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FULL = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class Detection:
    error_voxels: int
    attention_voxels: int
    hit_voxels: int
    error_regions: int
    found_regions: int
    attention_regions: int
    correct_regions: int

    @staticmethod
    def _ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    @property
    def voxel_sensitivity(self) -> float | None:
        return self._ratio(self.hit_voxels, self.error_voxels)

    @property
    def voxel_precision(self) -> float | None:
        return self._ratio(self.hit_voxels, self.attention_voxels)

    @property
    def region_sensitivity(self) -> float | None:
        return self._ratio(self.found_regions, self.error_regions)

    @property
    def region_precision(self) -> float | None:
        return self._ratio(self.correct_regions, self.attention_regions)

    def __add__(self, other: Detection) -> Detection:
        return Detection(*(a + b for a, b in zip(self._fields(), other._fields(), strict=True)))

    def _fields(self) -> tuple[int, ...]:
        return (
            self.error_voxels,
            self.attention_voxels,
            self.hit_voxels,
            self.error_regions,
            self.found_regions,
            self.attention_regions,
            self.correct_regions,
        )


NOTHING = Detection(0, 0, 0, 0, 0, 0, 0)


def detect(attention: np.ndarray, prediction: np.ndarray, truth: np.ndarray, min_error_voxels: int = 1) -> Detection:
    """Detection scores of one organ; all three arrays on one grid (bool)."""
    error = prediction.astype(bool) ^ truth.astype(bool)
    attention = attention.astype(bool)
    error_labels, n_err = ndimage.label(error, structure=FULL)
    if min_error_voxels > 1 and n_err:
        sizes = np.bincount(error_labels.ravel())
        small = np.flatnonzero(sizes < min_error_voxels)
        small = small[small > 0]
        error[np.isin(error_labels, small)] = False
        error_labels, n_err = ndimage.label(error, structure=FULL)
    near_attention = ndimage.binary_dilation(attention, structure=FULL) if attention.any() else attention
    found = len(set(np.unique(error_labels[near_attention])) - {0})
    att_labels, n_att = ndimage.label(attention, structure=FULL)
    near_error = ndimage.binary_dilation(error, structure=FULL) if error.any() else error
    correct = len(set(np.unique(att_labels[near_error])) - {0})
    return Detection(
        int(error.sum()), int(attention.sum()), int((attention & error).sum()), n_err, found, n_att, correct
    )
