"""Connected components, as the method uses them (26-connectivity: the full 3x3x3 structure)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FULL = ndimage.generate_binary_structure(3, 3)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The mask's largest 26-connected component (the mask itself when it has at most one)."""
    labels, count = ndimage.label(mask, structure=FULL)
    if count <= 1:
        return mask.astype(bool, copy=False)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))
