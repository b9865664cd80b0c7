"""Simulated ensemble members that make known errors, for tests, benchmarks and the loop report.

From a ground-truth label map, each organ gets a smooth probability field. Errors come in two
kinds, as in real ensembles: shared ones (every member misses the same part or leaks into the same
neighbour: the ensemble is confidently wrong, which attention should find only through overlap or
uncertainty at the edges) and member-specific ones (one member misses, leaks or shifts a boundary:
the members disagree, which inconsistency should find). Members are stored the way inference
stores them: soft maps masked to the dilated largest component and quantised, entropy of the
unmasked prediction quantised, and the pseudo-label = mean > 0.5, largest 26-connected component
(``atlasloop.imaging.ensemble_rule``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from atlasloop.imaging.compact import Cropped, EnsembleOutput, grow, nonzero_box, slices
from atlasloop.imaging.ensemble_rule import member_maps, organ_mask
from atlasloop.imaging.labels import ORGANS


@dataclass(frozen=True)
class ErrorModel:
    members: int = 3
    shared_error_rate: float = 0.25  # per organ: a miss or leak all members share
    member_error_rate: float = 0.35  # per organ and member: an error of its own
    blob_fraction: float = 0.12  # error blob radius as a fraction of the organ's extent
    noise: float = 0.15


def _blob(shape: tuple[int, ...], center: np.ndarray, radius: float) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) / max(radius, 1.0)) ** 2 for g, c in zip(grids, center, strict=True))
    return np.asarray(np.exp(-d2 * 1.5))


def _error(rng: np.random.Generator, organ_mask: np.ndarray, radius: float) -> tuple[np.ndarray, int]:
    """A miss (-1, inside the organ) or a leak (+1, just outside it) as a smooth blob."""
    sign = int(rng.choice([-1, 1]))
    if sign < 0:
        candidates = np.argwhere(organ_mask)
    else:
        shell = ndimage.binary_dilation(organ_mask, iterations=int(max(2, radius // 2))) & ~organ_mask
        candidates = np.argwhere(shell)
    if len(candidates) == 0:
        return np.zeros(organ_mask.shape), 0
    center = candidates[rng.integers(len(candidates))]
    return _blob(organ_mask.shape, center, radius), sign


def _member_probabilities(mask: np.ndarray, rng: np.random.Generator, model: ErrorModel) -> list[np.ndarray]:
    """Sigmoid outputs in logit space around the organ's signed distance: ~0 far away, a soft
    transition at the boundary, smooth noise, and error blobs that add or remove tissue."""
    extent = float(np.ptp(np.argwhere(mask), axis=0).mean()) + 1
    radius = max(2.0, model.blob_fraction * extent)
    sdf = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    base = 1.5 * sdf
    shared, shared_sign = (
        _error(rng, mask, radius) if rng.random() < model.shared_error_rate else (np.zeros(mask.shape), 0)
    )
    probs = []
    for _ in range(model.members):
        # Members share the error but not its strength: similar, not identical, mistakes.
        logit = base + shared_sign * float(rng.uniform(3.0, 12.0)) * shared
        logit = logit + model.noise * 10 * ndimage.gaussian_filter(rng.standard_normal(mask.shape), 2.0)
        if rng.random() < model.member_error_rate:
            blob, sign = _error(rng, mask, radius)
            logit = logit + sign * 8.0 * blob
        probs.append(1.0 / (1.0 + np.exp(-np.clip(logit, -40, 40))))
    return probs


def simulate(
    truth: np.ndarray, affine: np.ndarray, rng: np.random.Generator, model: ErrorModel | None = None
) -> EnsembleOutput:
    model = model or ErrorModel()
    members = [f"member{m}" for m in range(model.members)]
    x, y, z = truth.shape
    shape = (int(x), int(y), int(z))
    output = EnsembleOutput(shape, affine, members)
    for label, organ in ORGANS.items():
        mask = truth == label
        box = nonzero_box(mask)
        if box is None:
            for member in members:
                output.soft.setdefault(member, {})[organ] = Cropped(None, np.zeros((0, 0, 0), np.uint8))
                output.entropy.setdefault(member, {})[organ] = Cropped(None, np.zeros((0, 0, 0), np.uint8))
            output.pseudo[organ] = Cropped(None, np.zeros((0, 0, 0), bool))
            continue
        extent = float(np.mean([hi - lo for lo, hi in box]))
        box = grow(box, int(model.blob_fraction * extent * 3) + 8, shape)  # every error lands inside
        region = slices(box)
        probs = _member_probabilities(mask[region], rng, model)
        offset = tuple(lo for lo, _ in box)
        for member, p in zip(members, probs, strict=True):
            soft, entropy = member_maps(p)
            output.soft.setdefault(member, {})[organ] = soft.moved(offset)
            output.entropy.setdefault(member, {})[organ] = entropy.moved(offset)
        output.pseudo[organ] = Cropped.of(organ_mask(np.mean(probs, axis=0))).moved(offset)
    return output
