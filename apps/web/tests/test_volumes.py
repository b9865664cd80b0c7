"""The page's slices and revisions on the RAS grid: the pixel-to-voxel table the page's script
uses (atlasloop.web.volumes) holds for every plane, and edits land exactly on the voxels named,
whatever the stored orientation."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.volume import Volume
from atlasloop.web.volumes import LabelVolume, VolumeCache, apply_edits, changed_organs


def voxel_of(shape, plane, index, r, c):
    """The page's voxelOf (static/app.js), written again from the module's table."""
    x, y, z = shape
    i, j, k = {
        "axial": (x - 1 - c, y - 1 - r, index),
        "coronal": (x - 1 - c, index, z - 1 - r),
        "sagittal": (index, y - 1 - c, z - 1 - r),
    }[plane]
    return (i * y + j) * z + k


def turned(shape=(7, 5, 4), seed=0) -> Volume:
    """Labels stored with axes permuted and two flipped (LPS-like), spacing unequal."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 10, size=shape).astype(np.uint8)
    affine = np.array([[0, 0, -2.0, 40], [-1.5, 0, 0, 30], [0, 3.0, 0, -10], [0, 0, 0, 1]])
    return Volume(array, affine)


def test_every_pixel_of_every_plane_is_the_voxel_the_page_computes():
    labels = LabelVolume.of(turned())
    ras = np.ascontiguousarray(labels.ras.array).ravel()
    shape = labels.ras.array.shape
    for plane, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        for index in range(shape[axis]):
            picture = labels.picture(plane, index)
            rows, cols = picture.shape
            for r in range(rows):
                for c in range(cols):
                    assert picture[r, c] == ras[voxel_of(shape, plane, index, r, c)]
    with pytest.raises(InvalidInput, match="out of range"):
        labels.picture("axial", shape[2])
    with pytest.raises(InvalidInput, match="plane"):
        labels.picture("oblique", 0)


def test_edits_change_exactly_the_named_voxels_in_the_stored_orientation():
    base = LabelVolume.of(turned())
    before = base.stored.array.copy()
    shape = base.ras.array.shape
    voxels = [voxel_of(shape, "axial", 1, 0, 0), voxel_of(shape, "sagittal", 3, 2, 1)]
    ras = np.ascontiguousarray(base.ras.array).ravel()
    labels = [int((ras[v] + 1) % 10) for v in voxels]
    revised = apply_edits(base, voxels, labels, max_voxels=10)
    assert np.array_equal(revised.affine, base.stored.affine) and revised.array.dtype == before.dtype
    after = np.ascontiguousarray(LabelVolume.of(revised).ras.array).ravel()
    assert sorted(np.flatnonzero(after != ras).tolist()) == sorted(voxels)
    assert [int(after[v]) for v in voxels] == labels
    assert np.array_equal(base.stored.array, before)  # the cached version is untouched
    assert changed_organs(before, revised.array)


@pytest.mark.parametrize(
    ("voxels", "labels", "reason"),
    [
        ([0, 1], [1], "same length"),
        ([-1], [1], "indices"),
        ([10**6], [1], "indices"),
        ([0], [42], "labels"),
        (list(range(11)), [1] * 11, "at most 10"),
    ],
)
def test_a_bad_edit_is_refused_whole(voxels, labels, reason):
    base = LabelVolume.of(turned())
    before = base.stored.array.copy()
    with pytest.raises(InvalidInput, match=reason):
        apply_edits(base, voxels, labels, max_voxels=10)
    assert np.array_equal(base.stored.array, before)


def test_regions_map_from_world_boxes_to_ras_voxels():
    labels = LabelVolume.of(turned())
    world = labels.ras.affine[:3, :3] @ np.array([[1, 1, 1], [3, 2, 2]]).T + labels.ras.affine[:3, 3:4]
    lo, hi = labels.ras_box(world[:, 0], world[:, 1])
    assert (lo, hi) == ([1, 1, 1], [3, 2, 2])
    far = labels.ras_box([-1e4] * 3, [1e4] * 3)
    assert far == ([0, 0, 0], [n - 1 for n in labels.ras.array.shape])


def test_the_cache_keeps_the_recent_within_its_bytes():
    loads = []

    def load(seed):
        def inner():
            loads.append(seed)
            return turned(seed=seed)

        return inner

    cache = VolumeCache(capacity_bytes=2 * 7 * 5 * 4)
    for seed in (0, 1, 0, 2, 0, 1):
        cache.get(("c", str(seed)), load(seed))
    assert loads == [0, 1, 2, 1]  # 0 kept as the most recent; 1 evicted when 2 came in


def test_a_version_asked_for_at_once_by_many_is_loaded_once():
    import threading

    loads = []
    gate = threading.Event()

    def load():
        loads.append(1)
        gate.wait(5)
        return turned()

    cache = VolumeCache(capacity_bytes=1 << 20)
    threads = [threading.Thread(target=cache.get, args=(("c", "v"), load)) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert len(loads) == 1


def test_the_grid_from_the_geometry_alone_is_the_loaded_volumes():
    """The lease carries the grid so the page asks for pictures before any volume loads."""
    from atlasloop.web.volumes import grid_of

    for volume in (
        turned(),
        turned((9, 3, 6), seed=1),
        Volume(np.zeros((4, 6, 8), np.uint8), np.diag([0.8, 0.7, 2.5, 1])),
    ):
        assert grid_of(volume.shape, volume.affine) == LabelVolume.of(volume).grid()
    huge = grid_of((512, 512, 3000), np.diag([0.8, 0.8, 1.0, 1.0]))  # nothing of that size is allocated
    assert huge["shape"] == [512, 512, 3000]
