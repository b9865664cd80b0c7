"""Preprocessing exactly as the method needs it, and its inverse back to the native grid.

Forward (per model): orientation RAS, 1.5 mm isotropic (image linear, labels nearest), HU clipped
to [-175, 250] and scaled to [0, 1], cropped to the body foreground. Inverse: a map on the
(cropped) model grid back onto the CT's native grid and orientation, nearest for labels, linear
for probabilities where asked.

Design. The model grid is RAS-aligned, 1.5 mm, and anchored at the centre of a native corner voxel,
so that the native voxel centres of a scan whose spacing is a multiple of 1.5 mm fall exactly on
model grid points: nearest-neighbour inversion then returns a label map identical to the input.
Each direction is one ``scipy.ndimage.affine_transform`` from the array as stored (no reoriented
copy, no coordinate grid), so resampling holds only the input and the output in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform
from scipy import ndimage

from atlasloop.imaging.limits import check_shape
from atlasloop.imaging.volume import Volume


@dataclass(frozen=True)
class PreprocessConfig:
    """The method's preprocessing parameters (defaults from the reference)."""

    spacing_mm: float = 1.5
    hu_min: float = -175.0
    hu_max: float = 250.0
    body_hu: float = -500.0  # voxels above this are body (foreground) for the crop
    crop_margin: int = 4  # model-grid voxels kept around the body


@dataclass(frozen=True)
class GridTransform:
    """How the cropped model grid sits relative to the native grid (enough to invert)."""

    native_shape: tuple[int, int, int]
    native_affine: np.ndarray
    model_shape: tuple[int, int, int]
    model_affine: np.ndarray
    crop_start: tuple[int, int, int]
    crop_stop: tuple[int, int, int]

    @property
    def cropped_shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.crop_start, self.crop_stop, strict=True))  # type: ignore[return-value]

    @property
    def cropped_affine(self) -> np.ndarray:
        shift = np.eye(4)
        shift[:3, 3] = self.crop_start
        return self.model_affine @ shift


@dataclass
class Preprocessed:
    """The model-grid image in [0, 1] and the transform that maps it back."""

    image: np.ndarray
    grid: GridTransform


def model_grid(
    native_shape: tuple[int, int, int], native_affine: np.ndarray, spacing_mm: float
) -> tuple[tuple[int, int, int], np.ndarray]:
    """The full RAS-aligned model grid covering the native volume."""
    transform = ornt_transform(io_orientation(native_affine), axcodes2ornt("RAS"))
    ras_affine = native_affine @ inv_ornt_aff(transform, native_shape)
    ras_shape = [native_shape[int(axis)] for axis in transform[:, 0].argsort()]
    spacing = np.linalg.norm(ras_affine[:3, :3], axis=0)
    directions = ras_affine[:3, :3] / spacing
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing_mm
    affine[:3, 3] = ras_affine[:3, 3]
    extent = (np.asarray(ras_shape) - 1) * spacing
    shape = tuple(int(np.floor(e / spacing_mm + 1e-6)) + 1 for e in extent)
    return shape, affine  # type: ignore[return-value]


def resample(
    array: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, ...],
    dst_affine: np.ndarray,
    order: int,
    dtype: np.dtype | type = np.float32,
    cval: float = 0.0,
) -> np.ndarray:
    """``array`` (on ``src_affine``) sampled at the voxel centres of the destination grid."""
    dst_to_src = np.linalg.inv(src_affine) @ dst_affine
    out = np.empty(dst_shape, dtype=dtype)
    ndimage.affine_transform(
        array,
        dst_to_src[:3, :3],
        offset=dst_to_src[:3, 3],
        output=out,
        order=order,
        mode="constant",
        cval=cval,
        prefilter=False,
    )
    return out


def window(hu: np.ndarray, config: PreprocessConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Clip HU to the window and scale to [0, 1] (in place when ``out`` is ``hu``)."""
    out = np.clip(hu, config.hu_min, config.hu_max, out=out)
    out -= config.hu_min
    out *= 1.0 / (config.hu_max - config.hu_min)
    return out


def foreground_box(hu: np.ndarray, config: PreprocessConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bounding box of the body (HU above ``body_hu``) with a margin; the whole grid when empty."""
    body = hu > config.body_hu
    if not body.any():
        return (0, 0, 0), tuple(hu.shape)
    start, stop = [], []
    for axis in range(3):
        present = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
        start.append(max(int(present[0]) - config.crop_margin, 0))
        stop.append(min(int(present[-1]) + 1 + config.crop_margin, hu.shape[axis]))
    return tuple(start), tuple(stop)


def preprocess_image(ct: Volume, config: PreprocessConfig | None = None) -> Preprocessed:
    """The CT on the cropped model grid, windowed to [0, 1], with the transform to invert it."""
    config = config or PreprocessConfig()
    shape, affine = model_grid(ct.shape, ct.affine, config.spacing_mm)
    check_shape(shape, "the model grid")  # before resampling: never allocate an absurd grid
    hu = resample(ct.array, ct.affine, shape, affine, order=1, cval=-1024.0)
    start, stop = foreground_box(hu, config)
    cropped = np.ascontiguousarray(hu[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))])
    del hu
    grid = GridTransform(ct.shape, ct.affine.copy(), shape, affine, start, stop)  # type: ignore[arg-type]
    return Preprocessed(window(cropped, config, out=cropped), grid)


def labels_to_model(labels: Volume, grid: GridTransform) -> np.ndarray:
    """A native label map on the cropped model grid (nearest neighbour)."""
    return resample(labels.array, labels.affine, grid.cropped_shape, grid.cropped_affine, order=0, dtype=np.uint8)


def to_native(
    model_array: np.ndarray, grid: GridTransform, order: int = 0, dtype: np.dtype | type | None = None
) -> Volume:
    """A map on the cropped model grid back on the native grid and orientation.

    ``order=0`` (nearest) for labels and quantised probabilities, ``order=1`` for probabilities
    where smooth boundaries are wanted. Outside the crop the value is 0.
    """
    if tuple(model_array.shape) != grid.cropped_shape:
        raise ValueError(f"map shape {model_array.shape} is not the model grid {grid.cropped_shape}")
    out = resample(
        model_array,
        grid.cropped_affine,
        grid.native_shape,
        grid.native_affine,
        order=order,
        dtype=dtype or model_array.dtype,
    )
    return Volume(out, grid.native_affine.copy())
