"""The reference formulas the straightforward way, as the published script computes them: whole
volumes in float64, one organ at a time. Kept as the executable specification: the tests check
:mod:`atlasloop.method.reference` against it voxel for voxel, and ``make bench`` times both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from atlasloop.method.structures import OVERLAP_STRUCTURES

STRUCT = ndimage.generate_binary_structure(3, 3)


def _post_process(raw: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    values = raw.copy()
    mask = np.zeros(raw.shape)
    eroded = ndimage.binary_erosion(raw > threshold, structure=STRUCT, iterations=2)
    mask[ndimage.binary_dilation(eroded, structure=STRUCT, iterations=2) == 1] = 1
    values[mask != 1] = 0
    return values, mask


def organ_attention_dense(
    organ: str, soft: Sequence[np.ndarray], entropy: Sequence[np.ndarray], segmentations: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(stored uint8 attention, binary region) of one organ on the whole grid."""
    shape = entropy[0].shape
    entropy_map = np.zeros(shape)
    if len(soft) != 1:
        consistency = np.zeros((len(soft), *shape))
        for m, s in enumerate(soft):
            consistency[m] = s.astype(np.float64) / 255
    for e in entropy:
        entropy_map += e.astype(np.float64) / 255
    if len(soft) != 1:
        std_float, std_binary = _post_process(np.std(consistency, axis=0), 0.1)
    else:
        std_float = std_binary = np.zeros(shape)
    entropy_float, entropy_binary = _post_process(entropy_map / len(entropy), 0.05)
    own = segmentations.get(organ, np.zeros(shape)).astype(np.float64)
    overlap_initial = np.zeros(shape)
    for other in OVERLAP_STRUCTURES:
        if other != organ and other in segmentations:
            overlap_initial += ((own + segmentations[other].astype(np.float64)) > 1).astype(np.uint8)
    overlap_total = (overlap_initial > 0).astype(np.uint8)
    region = (std_binary + entropy_binary + overlap_total) > 0
    heat = std_float + entropy_float + overlap_total
    peak = np.max(heat)
    heat = heat / peak if peak > 0 else np.zeros(shape)
    return (heat * 255).astype(np.uint8), region
