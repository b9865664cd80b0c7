"""The ensemble's two rules on probabilities, written once (NumPy only, so the models, the method's
simulated members and the offline tools share them).

- **How a member's output is stored** (``member_maps``): per organ, the soft map zeroed outside
  the member's largest 26-connected component dilated once (3x3x3), quantised to uint8 (x255,
  truncating), and the elementwise entropy term -p ln p of the unmasked map, quantised the same
  way; both cropped to their non-zero box. This is what the published code stores and what the
  reference attention reads.
- **The pseudo-label** (``organ_mask``, ``add_organ``, ``pseudo_label``): the mean over members
  of each organ's probability, > 0.5, its largest 26-connected component. Organs may overlap in
  their masks (per-organ sigmoids); where they do, the label map keeps the lower id (painted
  first).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from atlasloop.imaging.compact import Cropped, entropy_term, quantise
from atlasloop.imaging.components import FULL, largest_component
from atlasloop.imaging.labels import ORGANS

THRESHOLD = 0.5


def above_threshold(probability: np.ndarray) -> np.ndarray:
    """Where a probability (a member's, or the members' mean) says the organ is there."""
    return np.asarray(probability > THRESHOLD)


def member_maps(probability: np.ndarray) -> tuple[Cropped, Cropped]:
    """(soft, entropy) of one member and organ, as stored."""
    above = above_threshold(probability)
    keep = ndimage.binary_dilation(largest_component(above), structure=FULL) if above.any() else above
    return Cropped.of(quantise(np.where(keep, probability, 0.0))), Cropped.of(quantise(entropy_term(probability)))


def organ_mask(mean: np.ndarray) -> np.ndarray:
    """One organ's pseudo-label from the members' mean probability."""
    mask = above_threshold(mean)
    return largest_component(mask) if mask.any() else mask


def add_organ(labels: np.ndarray, label: int, mean: np.ndarray) -> np.ndarray:
    """Paint one organ into ``labels`` (where no lower id is painted yet); returns its mask.
    One organ at a time, so a caller never holds every organ's float map at once."""
    mask = organ_mask(mean)
    labels[mask & (labels == 0)] = label
    return mask


def pseudo_label(
    mean: Mapping[str, np.ndarray], shape: tuple[int, ...], masks: dict[str, Cropped] | None = None
) -> np.ndarray:
    """The label map from every organ's mean probability; ``masks`` collects each organ's
    cropped mask when given."""
    labels = np.zeros(shape, np.uint8)
    for label, organ in ORGANS.items():
        mask = add_organ(labels, label, mean[organ])
        if masks is not None:
            masks[organ] = Cropped.of(mask)
    return labels
