"""Render one synthetic case: a CT in HU and its ground-truth label map.

The phantom is built on an RAS grid covering the site's field of view, then stored in the site's
orientation. Rendering order: air, body fat, surrounding tissues, target organs; then per-organ
texture, the partial-volume blur of the scanner, its intensity calibration and its noise.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from scipy import ndimage

from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.schema import BUILTIN
from atlasloop.imaging.synth.anatomy import Anatomy, sample_anatomy
from atlasloop.imaging.synth.shapes import Ellipsoid, Field
from atlasloop.imaging.synth.sites import PHASE_HU, Site
from atlasloop.imaging.volume import Volume

TISSUE_OF = {
    "gall_bladder": "gall_bladder",
    "kidney_left": "kidney",
    "kidney_right": "kidney",
    "liver": "liver",
    "pancreas": "pancreas",
    "spleen": "spleen",
    "stomach": "stomach",
    "aorta": "vessel",
    "postcava": "vessel",
}


# The anatomy draws AbdomenAtlas 1.0's nine organs; its CT is the same whatever the project's schema.
ANATOMY_IDS = BUILTIN["abdomenatlas-1.0"].ids

# Surrounding tissues that a larger schema (AbdomenAtlas 1.1) labels: tissue -> structure, or
# (structure on the patient's left, on the right) for a tissue drawn once per side. They are
# labelled only when the project's schema holds the structure, so a nine-organ cohort is unchanged.
SURROUNDING: dict[str, str | tuple[str, str]] = {
    "lung": ("lung_left", "lung_right"),
    "bowel": "intestine",
    "duodenum": "duodenum",
}


def _surrounding_label(tissue: str, shape: object) -> int:
    """The schema id a surrounding tissue's shape is labelled with; 0 when the schema lacks it."""
    named = SURROUNDING.get(tissue)
    if named is None:
        return 0
    if isinstance(named, tuple):  # in RAS the patient's left has the smaller x
        named = named[0] if isinstance(shape, Ellipsoid) and shape.center[0] < 0 else named[1]
    return ORGAN_IDS.get(named, 0)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], cells: int) -> np.ndarray:
    """Smooth random field in about [-1, 1]: coarse Gaussian noise, upsampled linearly."""
    coarse = rng.standard_normal((cells, cells, cells)).astype(np.float32)
    zoom = [s / cells for s in shape]
    field = ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)
    return np.asarray(np.clip(field[: shape[0], : shape[1], : shape[2]] / 1.5, -1.0, 1.0))


def _field(rng: np.random.Generator, shape: tuple[int, int, int], axes: tuple[np.ndarray, ...]) -> Field:
    warp = [6.0 * _smooth_noise(rng, shape, 5) for _ in range(3)]
    x = axes[0][:, None, None] + warp[0]
    y = axes[1][None, :, None] + warp[1]
    z = axes[2][None, None, :] + warp[2]
    return Field(x, y, z, axes, [_smooth_noise(rng, shape, 7) for _ in range(3)])  # type: ignore[arg-type]


def render(
    rng: np.random.Generator, site: Site, spacing_mm: float, anatomy: Anatomy | None = None, scale: float = 1.0
) -> tuple[Volume, Volume]:
    """(CT in HU as int16, labels as uint8), both in the site's stored orientation.

    ``scale`` shrinks the whole body (anatomy and field of view) while keeping the voxel spacing
    in millimetres: 0.5 gives a child-sized abdomen with 8 times fewer voxels on the 1.5 mm model
    grid, which is what CPU demos and tests of the full loop can afford.
    """
    if not 0.2 <= scale <= 1.0:
        raise ValueError(f"scale must be in [0.2, 1], got {scale}")
    anatomy = anatomy or sample_anatomy(rng)
    zlo, zhi = anatomy.z_range
    dz = max(site.slice_mm, spacing_mm)
    half = site.fov_mm / 2
    center_y = -10.0
    step, step_z = spacing_mm / scale, dz / scale  # in the anatomy's (adult) millimetres
    axes = (
        np.arange(-half, half + 1e-6, step, dtype=np.float32),
        np.arange(center_y - half, center_y + half + 1e-6, step, dtype=np.float32),
        np.arange(zlo, zhi + 1e-6, step_z, dtype=np.float32),
    )
    shape = tuple(len(a) for a in axes)
    f = _field(rng, shape, axes)  # type: ignore[arg-type]
    hu_of = PHASE_HU[site.phase]

    tissue = np.full(shape, -1000.0, dtype=np.float32)
    rx, ry = anatomy.body_radii
    body = (f.x / rx) ** 2 + (f.y / ry) ** 2 <= (1.0 + 0.03 * f.noise[0]) ** 2
    tissue[body] = hu_of["fat"]
    inner = (f.x / (rx - 22)) ** 2 + (f.y / (ry - 18)) ** 2 <= 1.0  # abdominal wall muscle ring
    wall = body & ~inner
    tissue[wall & ((f.x / (rx - 10)) ** 2 + (f.y / (ry - 8)) ** 2 > 1.0)] = hu_of["fat"]
    tissue[wall & ((f.x / (rx - 10)) ** 2 + (f.y / (ry - 8)) ** 2 <= 1.0)] = hu_of["muscle"]

    labels = np.zeros(shape, dtype=np.uint8)
    for name, shapes in anatomy.tissues:
        for shape_ in shapes:
            region, mask = shape_.mask(f)
            mask &= inner[region]
            labels[region][mask] = _surrounding_label(name, shape_)  # 0 where a later tissue covers one
            value = {
                "lung": -850.0,
                "muscle": hu_of["muscle"],
                "marrow": hu_of["marrow"],
                "bowel": hu_of["bowel"],
                "duodenum": hu_of["stomach"],
            }[name]
            tissue[region][mask] = value
            if name == "marrow":
                shell = mask & ~ndimage.binary_erosion(mask, iterations=2)
                tissue[region][shell] = hu_of["bone"] + 250
    for air in anatomy.bowel_air:
        region, mask = air.mask(f)
        tissue[region][mask & inner[region]] = -950.0

    drawn = np.zeros(shape, dtype=np.uint8)  # the anatomy's organs in AbdomenAtlas 1.0 ids
    for name, shapes in anatomy.organs:
        organ = ANATOMY_IDS[name]
        base = hu_of[TISSUE_OF[name]] + rng.normal(0, 6)
        for shape_ in shapes:
            region, mask = shape_.mask(f)
            mask &= body[region]
            drawn[region][mask] = organ
            texture = 8.0 * f.noise[(organ + 1) % 3][region][mask]
            tissue[region][mask] = base + texture
    if anatomy.stomach_air is not None:
        region, mask = anatomy.stomach_air.mask(f)
        tissue[region][mask & (drawn[region] == ANATOMY_IDS["stomach"])] = -980.0
    # In the project's ids; an organ its schema lacks is drawn but not labelled.
    to_project = np.zeros(256, np.uint8)
    for name, organ in ANATOMY_IDS.items():
        to_project[organ] = ORGAN_IDS.get(name, 0)
    labels[drawn > 0] = to_project[drawn[drawn > 0]]

    sigma = [site.blur_mm / s for s in (spacing_mm, spacing_mm, dz)]
    hu = ndimage.gaussian_filter(tissue, sigma, mode="nearest")
    hu = hu * site.gain + site.offset_hu
    hu += rng.normal(0.0, site.noise_hu, size=shape).astype(np.float32)
    ct = np.clip(np.round(hu), -1024, 3071).astype(np.int16)

    affine = np.diag([spacing_mm, spacing_mm, dz, 1.0])
    affine[:3, 3] = [axes[0][0] * scale, axes[1][0] * scale, axes[2][0] * scale]
    return _store(Volume(ct, affine), site.orientation), _store(Volume(labels, affine), site.orientation)


def _store(volume: Volume, codes: str) -> Volume:
    """The same voxels re-laid in another axis orientation (for example LPS, as from DICOM)."""
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(codes)))
    array = np.ascontiguousarray(apply_orientation(volume.array, transform))
    return Volume(array, volume.affine @ inv_ornt_aff(transform, volume.shape))
