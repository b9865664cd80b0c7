"""The rendering service's operations: a slice, the most salient slices, a contact sheet, exports.

Attention lives on its own grid (the model grid); it is resampled only at the displayed slice's
voxel centres (one ``map_coordinates`` over the picture's pixels), never for the whole volume,
except for an explicit export.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation
from PIL import Image

from atlasloop.common import layout, observe
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore, StoredObject
from atlasloop.imaging.display import PLANE_AXIS, RasVolume, SliceGeometry, slice_geometry, take, world_index
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.preprocess import resample
from atlasloop.imaging.viewer import HEAT_TABLE, LABEL_TABLE, heat_color_table, label_color_table
from atlasloop.imaging.volume import Volume, save_nifti
from atlasloop.rendering import layers
from atlasloop.rendering.fifo_gate import FifoGate
from atlasloop.rendering.sampling import sample_slice
from atlasloop.rendering.volumes import AttentionSet, VolumeSource


@dataclass(frozen=True)
class View:
    case_id: str
    label_version: str = ""
    plane: str = "axial"
    index: int = 0
    world_mm: tuple[float, float, float] | None = None
    preset: str = "abdomen"
    level: float = 40.0
    width: float = 400.0
    label_style: str = ""  # "", "contour", "fill"
    heatmap_organ: str = ""
    region_boxes: bool = False
    scale_bar: bool = False
    letters: bool = False
    neurological: bool = False
    max_size: int = 0
    min_size: int = 0
    model_set: str = ""


class RenderingCore:
    def __init__(
        self, source: VolumeSource, store: ObjectStore, max_size_px: int, max_salient: int, draw_slots: int = 1
    ) -> None:
        self.source = source
        self._drawing = FifoGate(draw_slots)  # pictures drawn in the order they were asked for
        self._store = store
        self._max_size = max_size_px
        self._max_salient = max_salient

    # ---- one slice ----
    def render(self, view: View) -> tuple[bytes, int]:
        with observe.step("rendering", "render slice", case_id=view.case_id):
            return self._render(view)

    def _render(self, view: View) -> tuple[bytes, int]:
        if view.max_size < 0 or view.max_size > self._max_size:
            raise InvalidInput(f"max_size_px must be within 0..{self._max_size}")
        if view.min_size < 0 or view.min_size > self._max_size:
            raise InvalidInput(f"min_size_px must be within 0..{self._max_size}")
        if view.label_style not in ("", "contour", "fill"):
            raise InvalidInput("label style must be contour or fill")
        if view.heatmap_organ and view.heatmap_organ not in ORGANS.values():
            raise InvalidInput(f"{view.heatmap_organ!r} is not one of the schema's organs")
        window = layers.Window.of(view.preset, view.level, view.width)
        planes = self.source.ct_planes(view.case_id)
        ct = planes.volume  # its geometry is known; its voxels arrive as pictures need them
        axis = PLANE_AXIS[view.plane]
        index = view.index
        if view.world_mm is not None:
            index = round(world_index(ct.affine, np.asarray(view.world_mm))[axis])
        geometry = slice_geometry(ct.array.shape, ct.spacing, view.plane, index, view.neurological)
        labels = None
        if view.label_style and view.label_version:  # the label plane's bricks beside the CT's
            with ThreadPoolExecutor(max_workers=1) as pool:
                opening = pool.submit(self.source.label_planes, view.case_id, view.label_version)
                hu_plane = planes.plane(axis, geometry.index)
                label_planes = opening.result()
                if label_planes.volume.array.shape != ct.array.shape:
                    raise InvalidInput("the label version is not on the case's CT grid")
                labels = label_planes.plane(axis, geometry.index)
        else:
            hu_plane = planes.plane(axis, geometry.index)
        with self._drawing.hold():  # the planes are read; what is left is CPU
            return self._compose(ct, hu_plane, labels, geometry, view, window), index

    def _compose(
        self,
        ct: RasVolume,
        hu_plane: np.ndarray,
        label_plane: np.ndarray | None,
        geometry: SliceGeometry,
        view: View,
        window: layers.Window,
    ) -> bytes:
        """The picture of ``geometry`` from its plane of the CT and of the labels (RAS, one voxel
        thick); ``ct`` gives the grid."""
        flat = replace(geometry, index=0)  # the planes hold the one slice
        hu = take(hu_plane, flat)
        limit = view.max_size or self._max_size
        size = layers.output_size(hu.shape, geometry.rows_mm, geometry.cols_mm, limit, view.min_size)
        rgb = layers.gray(hu, window, size)
        if label_plane is not None:
            layers.draw_labels(rgb, layers.resize_labels(take(label_plane, flat), size), view.label_style)
        boxes = []
        if view.heatmap_organ or view.region_boxes:
            attention = self.source.attention(view.case_id, view.model_set)
            if view.heatmap_organ:
                layers.draw_heat(rgb, self.heat(attention, view.heatmap_organ, ct, geometry), size)
            if view.region_boxes:
                boxes = self._boxes(attention, ct, geometry, hu.shape, size, view.heatmap_organ)
        image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        mm_per_pixel = geometry.cols_mm * hu.shape[1] / size[0] if view.scale_bar else None
        layers.annotate(image, geometry.letters if view.letters else None, mm_per_pixel, boxes)
        return layers.png(image)

    def heat(self, attention: AttentionSet, organ: str, ct: RasVolume, geometry: SliceGeometry) -> np.ndarray:
        """The organ's heat in [0, 1] at the displayed voxels (zero where it has none).

        Only the pixels inside the organ crop's footprint on this slice are sampled.
        """
        crop = attention.organs.get(organ)
        if crop is None:
            raise NotFound(f"no attention map for {organ}")
        heat = np.zeros((len(geometry.rows), len(geometry.cols)), np.float32)
        if crop.box is None or not crop.data.any():
            return heat
        corners = np.array(np.meshgrid(*[(lo - 0.5, hi - 0.5) for lo, hi in crop.box], indexing="ij")).reshape(3, -1)
        world = attention.affine[:3, :3] @ corners + attention.affine[:3, 3:4]
        voxels = np.linalg.solve(ct.affine[:3, :3], world - ct.affine[:3, 3:4])
        lo, hi = voxels.min(axis=1), voxels.max(axis=1)
        axis = PLANE_AXIS[geometry.plane]
        if not lo[axis] <= geometry.index <= hi[axis]:
            return heat
        row_sel = np.flatnonzero((geometry.rows >= lo[geometry.row_axis]) & (geometry.rows <= hi[geometry.row_axis]))
        col_sel = np.flatnonzero((geometry.cols >= lo[geometry.col_axis]) & (geometry.cols <= hi[geometry.col_axis]))
        if not row_sel.size or not col_sel.size:
            return heat
        to_crop = np.linalg.inv(attention.affine) @ ct.affine  # CT voxel -> crop voxel
        to_crop[:3, 3] -= [lo for lo, _ in crop.box]
        values = sample_slice(
            crop.data,
            to_crop,
            axis,
            geometry.index,
            geometry.row_axis,
            geometry.rows[row_sel],
            geometry.col_axis,
            geometry.cols[col_sel],
        )
        heat[np.ix_(row_sel, col_sel)] = values / 255.0
        return heat

    def _boxes(
        self,
        attention: AttentionSet,
        ct: RasVolume,
        geometry: SliceGeometry,
        shape: tuple[int, int],
        size: tuple[int, int],
        organ: str,
    ) -> list[tuple[tuple[float, float, float, float], str]]:
        axis = PLANE_AXIS[geometry.plane]
        out = []
        for region in attention.regions:
            if organ and region["organ"] != organ:
                continue
            corners = np.array([region["min_mm"], region["max_mm"]])
            voxel = np.array([world_index(ct.affine, c) for c in corners])
            lo, hi = voxel.min(axis=0), voxel.max(axis=0)
            if not lo[axis] - 0.5 <= geometry.index <= hi[axis] + 0.5:
                continue
            pixels = []
            for corner in (lo, hi):
                point = np.clip(np.round(corner), 0, np.array(ct.array.shape) - 1).astype(int)
                pixels.append(self._pixel(geometry, point, shape, size))
            (x0, y0), (x1, y1) = pixels
            out.append(((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), region["organ"]))
        return out

    @staticmethod
    def _pixel(geometry: SliceGeometry, voxel: np.ndarray, shape: tuple[int, int], size: tuple[int, int]):
        rows, cols = shape
        r = rows - 1 - voxel[geometry.row_axis]
        c_index = voxel[geometry.col_axis]
        c = cols - 1 - c_index if geometry.cols[0] > geometry.cols[-1] else c_index
        return (c + 0.5) * size[0] / cols, (r + 0.5) * size[1] / rows

    # ---- the most salient slices ----
    def slice_scores(self, attention: AttentionSet, organ: str, ct: RasVolume, plane: str) -> dict[int, float]:
        crop = attention.organs.get(organ)
        if crop is None or crop.box is None or not crop.data.any():
            return {}
        target = PLANE_AXIS[plane]
        ornt = io_orientation(attention.affine)
        axis = int(np.flatnonzero(ornt[:, 0] == target)[0])
        sums = crop.data.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        center = np.array([(lo + hi - 1) / 2 for lo, hi in crop.box], dtype=np.float64)
        scores: dict[int, float] = {}
        for offset, total in enumerate(sums):
            if not total:
                continue
            point = center.copy()
            point[axis] = crop.box[axis][0] + offset
            world = attention.affine[:3, :3] @ point + attention.affine[:3, 3]
            index = round(world_index(ct.affine, world)[target])
            if 0 <= index < ct.array.shape[target]:
                scores[index] = max(scores.get(index, 0.0), float(total) / 255.0)
        return scores

    def salient(self, view: View, count: int, organs: list[str]) -> Iterator[tuple[bytes, int, float, str]]:
        if not 1 <= count <= self._max_salient:
            raise InvalidInput(f"count must be within 1..{self._max_salient}")
        ct = self.source.ct(view.case_id)
        attention = self.source.attention(view.case_id, view.model_set)
        best: dict[int, tuple[float, str]] = {}
        for organ in organs or list(ORGANS.values()):
            if organ not in ORGANS.values():
                raise InvalidInput(f"{organ!r} is not one of the schema's organs")
            for index, score in self.slice_scores(attention, organ, ct, view.plane).items():
                if score > best.get(index, (0.0, ""))[0]:
                    best[index] = (score, organ)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:count]
        for index, (score, organ) in ranked:
            picture, _ = self.render(replace(view, index=index, world_mm=None, heatmap_organ=organ))
            yield picture, index, score, organ

    # ---- contact sheet ----
    def contact_sheet(self, case_id: str, label_version: str, tiles: int, tile_px: int) -> bytes:
        if not 1 <= tiles <= 64 or not 32 <= tile_px <= 512:
            raise InvalidInput("tiles must be within 1..64 and tile_px within 32..512")
        ct = self.source.ct(case_id)
        if label_version:
            present = np.flatnonzero(self.source.labels(case_id, label_version).array.any(axis=(0, 1)))
        else:
            present = np.flatnonzero((ct.array > -500).any(axis=(0, 1)))
        if present.size == 0:
            present = np.arange(ct.array.shape[2])
        indices = np.unique(np.linspace(present[0], present[-1], tiles).round().astype(int))
        columns = int(np.ceil(np.sqrt(len(indices))))
        rows = int(np.ceil(len(indices) / columns))
        sheet = Image.new("RGB", (columns * tile_px, rows * tile_px), "black")
        for n, index in enumerate(indices):
            picture, _ = self.render(
                View(
                    case_id,
                    label_version,
                    "axial",
                    int(index),
                    label_style="fill" if label_version else "",
                    max_size=tile_px,
                )
            )
            tile = Image.open(io.BytesIO(picture))
            x, y = (n % columns) * tile_px, (n // columns) * tile_px
            sheet.paste(tile, (x + (tile_px - tile.width) // 2, y + (tile_px - tile.height) // 2))
        return layers.png(sheet)

    # ---- files for desktop viewers ----
    def viewer_files(self, case_id: str, organs: list[str], work: Path, model_set: str = "") -> list[Path]:
        """One heatmap per organ on the CT's own grid (uint8 NIfTI, ``attention_<organ>.nii.gz``)
        and the label and heat colour tables, written into ``work``."""
        ct_shape, ct_affine = self._native_grid(case_id, work)
        attention = self.source.attention(case_id, model_set)
        written = []
        for organ in organs or list(ORGANS.values()):
            crop = attention.organs.get(organ)
            if crop is None:
                raise NotFound(f"no attention map for {organ}")
            data = np.zeros(ct_shape, np.uint8)
            if crop.box is not None:
                shift = np.eye(4)
                shift[:3, 3] = [lo for lo, _ in crop.box]
                data = resample(crop.data, attention.affine @ shift, ct_shape, ct_affine, order=1, dtype=np.uint8)
            written.append(save_nifti(Volume(data, ct_affine), work / f"attention_{organ}.nii.gz"))
        for name, text in ((LABEL_TABLE, label_color_table()), (HEAT_TABLE, heat_color_table(layers.HEAT_LUT))):
            (work / name).write_text(text)
            written.append(work / name)
        return written

    def export(self, case_id: str, label_version: str, organs: list[str], work: Path) -> list[StoredObject]:
        """The viewer files (and the label version, when given) into the object store."""
        prefix = layout.export_prefix(case_id, label_version)
        written = []
        if label_version:
            labels_path = work / "labels.nii.gz"
            self._store.download_file(layout.label_key(case_id, label_version), labels_path)
            written.append(self._store.put_file(prefix + "labels.nii.gz", labels_path))
        for path in self.viewer_files(case_id, organs, work):
            written.append(self._store.put_file(prefix + path.name, path))
        return written

    def _native_grid(self, case_id: str, work: Path) -> tuple[tuple[int, int, int], np.ndarray]:
        """The CT's stored grid (its own orientation), as viewers load it."""
        path = work / "ct.nii.gz"
        self._store.download_file(layout.ct_key(case_id), path)
        header: Any = nib.load(path)  # a NIfTI image: shape and affine from its header
        x, y, z = (int(n) for n in header.shape[:3])
        return (x, y, z), header.affine
