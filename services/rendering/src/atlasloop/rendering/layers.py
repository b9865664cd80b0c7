"""Drawing: CT window, label fills or contours in the organ colour table, one organ's attention
heatmap (inferno, perceptually uniform, transparent where zero), region boxes, scale bar and
orientation letters. Pixels are square: the slice is resized by its voxel spacing first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.labels import NUM_CLASSES, ORGAN_COLORS, ORGANS
from atlasloop.rendering.png import encode_rgb

PRESETS = {"abdomen": (40.0, 400.0), "liver": (60.0, 160.0), "bone": (400.0, 1800.0)}
LABEL_LUT = np.zeros((NUM_CLASSES, 3), np.float32)
for _label, _name in ORGANS.items():
    LABEL_LUT[_label] = ORGAN_COLORS[_name]
HEAT_LUT = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
FILL_ALPHA, HEAT_ALPHA = 0.35, 0.6


@dataclass(frozen=True)
class Window:
    level: float
    width: float

    @classmethod
    def of(cls, preset: str, level: float, width: float) -> Window:
        if preset:
            return cls(*PRESETS[preset])
        if level == 0 and width == 0:  # no window given at all
            return cls(*PRESETS["abdomen"])
        if not width > 0:
            raise InvalidInput("window width must be > 0 HU")
        return cls(level, width)


def output_size(
    shape: tuple[int, int], rows_mm: float, cols_mm: float, max_size: int, min_size: int = 0
) -> tuple[int, int]:
    """(width, height) in pixels with square pixels, the long side at least ``min_size`` and at
    most ``max_size`` (0: no bound)."""
    pixel = min(rows_mm, cols_mm)
    width, height = shape[1] * cols_mm / pixel, shape[0] * rows_mm / pixel
    if min_size and max(width, height) < min_size:
        scale = min_size / max(width, height)
        width, height = width * scale, height * scale
    if max_size and max(width, height) > max_size:
        scale = max_size / max(width, height)
        width, height = width * scale, height * scale
    return max(1, round(width)), max(1, round(height))


def gray(hu: np.ndarray, window: Window, size: tuple[int, int]) -> np.ndarray:
    low = window.level - window.width / 2
    values = np.clip((hu.astype(np.float32) - low) * (255.0 / window.width), 0, 255).astype(np.uint8)
    resized = Image.fromarray(values).resize(size, Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(resized, np.float32)[..., None], 3, axis=2)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))


def draw_labels(rgb: np.ndarray, labels: np.ndarray, style: str) -> None:
    if style == "fill":
        mask = labels > 0
        rgb[mask] = (1 - FILL_ALPHA) * rgb[mask] + FILL_ALPHA * LABEL_LUT[labels[mask]]
    elif style == "contour":
        edge = np.zeros(labels.shape, bool)
        edge[:-1] |= labels[:-1] != labels[1:]
        edge[1:] |= labels[1:] != labels[:-1]
        edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge &= labels > 0  # the organ's own outermost pixels
        rgb[edge] = LABEL_LUT[labels[edge]]


def draw_heat(rgb: np.ndarray, heat: np.ndarray, size: tuple[int, int]) -> None:
    """``heat`` in [0, 1] on the slice; nothing is drawn where it is zero.

    Blended with dense operations over the box of drawn pixels (alpha 0 elsewhere in it): gathering
    and scattering the drawn pixels through a mask took a third of a slice's render."""
    heat = heat.astype(np.float32, copy=False)
    if heat.shape == (size[1], size[0]):
        resized = heat
    else:
        resized = np.asarray(Image.fromarray(heat, mode="F").resize(size, Image.Resampling.BILINEAR))
    shown = resized > 1e-3
    rows, cols = np.flatnonzero(shown.any(axis=1)), np.flatnonzero(shown.any(axis=0))
    if not rows.size:
        return
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    level, drawn = resized[box], shown[box]
    colors = HEAT_LUT[np.clip((level * 255).astype(np.int32), 0, 255)]
    alpha = np.where(drawn, HEAT_ALPHA * np.clip(0.35 + level, 0, 1), 0).astype(np.float32)[..., None]
    view = rgb[box]
    view += alpha * (colors - view)


def annotate(
    image: Image.Image,
    letters: tuple[str, str, str, str] | None,
    mm_per_pixel: float | None,
    boxes: list[tuple[tuple[float, float, float, float], str]],
) -> None:
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for (x0, y0, x1, y1), text in boxes:
        draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 0), width=1)
        x = min(x0 + 2, w - 2 - draw.textlength(text))  # keep the caption inside the picture
        draw.text((max(0, x), max(0, y0 - 11)), text, fill=(255, 255, 0))
    if letters:
        left, right, top, bottom = letters
        draw.text((3, h // 2 - 5), left, fill=(255, 255, 255))
        draw.text((w - 10, h // 2 - 5), right, fill=(255, 255, 255))
        draw.text((w // 2 - 3, 2), top, fill=(255, 255, 255))
        draw.text((w // 2 - 3, h - 13), bottom, fill=(255, 255, 255))
    if mm_per_pixel:
        length_mm = 50.0 if w * mm_per_pixel > 150 else 10.0
        pixels = length_mm / mm_per_pixel
        draw.line([(w - 10 - pixels, h - 12), (w - 10, h - 12)], fill=(255, 255, 255), width=2)
        caption = f"{length_mm:g} mm"
        draw.text((w - 10 - max(pixels, draw.textlength(caption)), h - 26), caption, fill=(255, 255, 255))


def png(rgb: np.ndarray | Image.Image) -> bytes:
    array = np.asarray(rgb.convert("RGB")) if isinstance(rgb, Image.Image) else np.clip(rgb, 0, 255).astype(np.uint8)
    return encode_rgb(np.ascontiguousarray(array))
