"""The published method's attention maps and priorities, reproduced exactly.

Per organ o, over the members' stored maps (uint8, x255 truncated; soft maps already zeroed
outside each member's dilated largest component):

- inconsistency I = population std over members of soft/255; B_I = opening(I > 0.1), where the
  opening is 2 erosions then 2 dilations with the full 3x3x3 structure; with one member I = 0;
- uncertainty U = mean over members of entropy/255 (the -p ln p term); B_U = opening(U > 0.05);
- overlap O = voxels where o's pseudo-label meets another present structure of the reference's
  20 non-vessel structures;
- region A = B_I | B_U | O; heat = (I*B_I + U*B_U + O) / max, all zero when the max is 0 (the
  reference divides by zero there and writes NaN; we do not);
- stored attention = uint8(heat * 255), truncated; case priority = sum over organs of |A|;
  organs ordered by the sum of their stored attention, zeros left out.

Arithmetic follows the reference operation by operation in float64, so thresholds flip on exactly
the same voxels. The work is confined to the box around the organ's non-zero inputs plus two
voxels, which changes nothing: outside it every input is zero, erosion sees background either way,
and two dilations reach at most two voxels out. Ties in rankings keep input order (the reference's
``np.argsort`` is not stable, so its tie order is arbitrary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from atlasloop.imaging.compact import Box, Cropped, grow, union_box
from atlasloop.method.structures import OVERLAP_STRUCTURES

FULL = ndimage.generate_binary_structure(3, 3)
STD_THRESHOLD = 0.1
ENTROPY_THRESHOLD = 0.05


def opening(mask: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Erosions then as many dilations with the full 3x3x3 structure (scipy, background outside)."""
    if iterations == 0:
        return mask
    eroded = ndimage.binary_erosion(mask, structure=FULL, iterations=iterations)
    return np.asarray(ndimage.binary_dilation(eroded, structure=FULL, iterations=iterations))


@dataclass
class OrganAttention:
    """One organ's maps inside ``box`` (global voxel ranges)."""

    organ: str
    box: Box | None
    inconsistency: np.ndarray  # I * B_I
    uncertainty: np.ndarray  # U * B_U
    overlap: np.ndarray  # O (bool)
    region: np.ndarray  # A (bool)
    heat: np.ndarray  # normalised heat in [0, 1], float64

    @property
    def region_voxels(self) -> int:
        return int(np.count_nonzero(self.region))

    @property
    def stored(self) -> np.ndarray:
        """The attention map as the reference saves it: uint8(heat * 255), truncated."""
        return (self.heat * 255).astype(np.uint8)

    @property
    def stored_sum(self) -> int:
        return int(self.stored.sum(dtype=np.int64))

    def full(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The stored uint8 attention on the whole grid."""
        return Cropped(self.box, self.stored).full(shape) if self.box else np.zeros(shape, np.uint8)


def empty(organ: str) -> OrganAttention:
    z = np.zeros((0, 0, 0))
    return OrganAttention(organ, None, z, z, z.astype(bool), z.astype(bool), z)


def organ_box(
    organ: str,
    soft: Sequence[Cropped],
    entropy: Sequence[Cropped],
    pseudo: Mapping[str, Cropped],
    shape: tuple[int, int, int],
    margin: int = 2,
) -> Box | None:
    own = pseudo.get(organ)
    box = union_box([c.box for c in (*soft, *entropy)] + [own.box if own else None])
    return grow(box, margin, shape) if box is not None else None


def inconsistency(soft: Sequence[np.ndarray], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if len(soft) < 2:  # the reference leaves both maps at zero with a single model
        return np.zeros(shape), np.zeros(shape, bool)
    stack = np.stack([s.astype(np.float64) / 255 for s in soft])
    std = np.std(stack, axis=0)
    mask = opening(std > STD_THRESHOLD)
    std[~mask] = 0
    return std, mask


def uncertainty(entropy: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    total = np.zeros(entropy[0].shape)
    for e in entropy:  # summed member by member, then divided: the reference's order
        total += e.astype(np.float64) / 255
    mean = total / len(entropy)
    mask = opening(mean > ENTROPY_THRESHOLD)
    mean[~mask] = 0
    return mean, mask


def overlap(organ: str, pseudo: Mapping[str, Cropped], box: Box) -> np.ndarray:
    own = pseudo[organ].read(box).astype(bool) if organ in pseudo else np.zeros(_shape(box), bool)
    hits = np.zeros(_shape(box), bool)
    for other in OVERLAP_STRUCTURES:
        if other != organ and other in pseudo:
            hits |= own & pseudo[other].read(box).astype(bool)
    return hits


def organ_attention(
    organ: str,
    soft: Sequence[Cropped],
    entropy: Sequence[Cropped],
    pseudo: Mapping[str, Cropped],
    shape: tuple[int, int, int],
) -> OrganAttention:
    """The reference attention of one organ from its members' stored maps."""
    if not entropy:
        raise ValueError(f"{organ}: no member maps")
    box = organ_box(organ, soft, entropy, pseudo, shape)
    if box is None:
        return empty(organ)
    i_map, b_i = inconsistency([c.read(box) for c in soft], _shape(box))
    u_map, b_u = uncertainty([c.read(box) for c in entropy])
    o_map = overlap(organ, pseudo, box)
    region = b_i | b_u | o_map
    heat = i_map + u_map + o_map
    peak = heat.max() if heat.size else 0.0
    heat = heat / peak if peak > 0 else np.zeros_like(heat)
    return OrganAttention(organ, box, i_map, u_map, o_map, region, heat)


def case_priority(organs: Sequence[OrganAttention]) -> int:
    return sum(o.region_voxels for o in organs)


def organ_order(organs: Sequence[OrganAttention]) -> list[str]:
    """Organs with non-zero stored attention, largest sum first (ties in input order)."""
    sums = [(o.organ, o.stored_sum) for o in organs]
    return [name for name, total in sorted((s for s in sums if s[1] != 0), key=lambda s: -s[1])]


def rank_cases(priorities: Mapping[str, float]) -> list[str]:
    return [case for case, _ in sorted(priorities.items(), key=lambda item: -item[1])]


def _shape(box: Box) -> tuple[int, int, int]:
    return tuple(hi - lo for lo, hi in box)  # type: ignore[return-value]
