"""A picture of synthetic cases: one axial slice per case with the labels overlaid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform
from PIL import Image, ImageDraw

from atlasloop.imaging.labels import ORGAN_COLORS, ORGANS
from atlasloop.imaging.volume import Volume


def to_ras(volume: Volume) -> np.ndarray:
    transform = ornt_transform(io_orientation(volume.affine), axcodes2ornt("RAS"))
    return np.asarray(apply_orientation(volume.array, transform))


def axial_overlay(
    ct: Volume, labels: Volume, level: float = 40, width: float = 400, alpha: float = 0.45, pixel_mm: float = 1.0
) -> Image.Image:
    """The axial slice with the most organs, radiological convention (patient left on image right)."""
    hu, lab = to_ras(ct), to_ras(labels)
    per_slice = [(len(np.unique(lab[:, :, k])), int((lab[:, :, k] > 0).sum())) for k in range(lab.shape[2])]
    k = max(range(len(per_slice)), key=lambda i: per_slice[i])
    gray = np.clip((hu[:, :, k].astype(np.float32) - (level - width / 2)) / width, 0, 1) * 255
    rgb = np.repeat(gray[..., None], 3, axis=2)
    for label, name in ORGANS.items():
        mask = lab[:, :, k] == label
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(ORGAN_COLORS[name], dtype=np.float32)
    # RAS array: i grows towards the patient's right, j towards anterior. Radiological display puts
    # anterior at the top and the patient's right on the image's left: rows = reversed j,
    # columns = reversed i.
    image = np.ascontiguousarray(np.transpose(rgb, (1, 0, 2))[::-1, ::-1]).astype(np.uint8)
    spacing = np.linalg.norm(ct.affine[:3, :3], axis=0)
    size = (round(image.shape[1] * spacing[0] / pixel_mm), round(image.shape[0] * spacing[1] / pixel_mm))
    return Image.fromarray(image).resize(size, Image.Resampling.NEAREST)


def contact_sheet(panels: Sequence[tuple[str, Image.Image]], path: Path, tile: int = 300) -> Path:
    sheet = Image.new("RGB", (tile * len(panels), tile + 20), "black")
    draw = ImageDraw.Draw(sheet)
    for i, (title, image) in enumerate(panels):
        image = image.copy()
        image.thumbnail((tile, tile))
        sheet.paste(image, (i * tile + (tile - image.width) // 2, 20 + (tile - image.height) // 2))
        draw.text((i * tile + 6, 4), title, fill="white")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
