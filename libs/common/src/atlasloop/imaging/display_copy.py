"""A display-ready copy of a CT: what a viewer reads to show the first picture of a case fast.

The stored ``ct.nii.gz`` is gzip: inflating a 512 x 512 x 300 int16 CT takes about 0.7 s here,
most of the 1.4 s to a first rendered slice. The display copy holds the same voxels compressed
with Blosc2 (LZ4 after a byte shuffle, multi-threaded), which decompress in about 0.1 s at a
similar size (``make bench``: rendering). Storage writes it beside the CT in the same write group;
the renderer reads it when it is there, and the NIfTI otherwise (cases imported before it existed).

Layout: ``ALDISP1\\n``, a 4-byte little-endian header length, a JSON header (shape, dtype, affine
as stored), then one Blosc2 frame. Reading checks the header's geometry and dtype with the same
limits as any volume, and that the frame's declared size equals the header's array before it
decompresses anything (no decompression bomb).

``blosc2`` is imported with this module, not at first use: its import takes about 0.3 s here, which
a service that imports this module pays at start instead of on its first picture.
"""

from __future__ import annotations

import json
import struct

import blosc2
import numpy as np

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.limits import check_affine, check_dtype
from atlasloop.imaging.volume import MAX_VOXELS, Volume, check_geometry

MAGIC = b"ALDISP1\n"
MAX_HEADER_BYTES = 64 * 1024
MAX_FRAME_BYTES = 2**31 - 1024  # one Blosc2 frame; a larger volume gets no display copy


def encode(volume: Volume) -> bytes | None:
    """The display copy of ``volume``; None when it is too large for one frame (the renderer then
    reads the NIfTI, as for a case without a copy)."""
    array = np.ascontiguousarray(volume.array, dtype=volume.array.dtype)
    if array.nbytes > MAX_FRAME_BYTES:
        return None
    header = json.dumps(
        {"shape": list(array.shape), "dtype": array.dtype.str, "affine": volume.affine.tolist()}
    ).encode()
    frame = blosc2.compress2(
        array.reshape(-1).view(np.uint8),
        typesize=array.dtype.itemsize,
        clevel=5,
        codec=blosc2.Codec.LZ4,
        filter=blosc2.Filter.SHUFFLE,
    )
    return MAGIC + struct.pack("<I", len(header)) + header + bytes(frame)


def decode(data: bytes, source: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """The volume of a display copy, every claim checked before anything is allocated."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ImageError(source, "not a display copy")
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    if length > MAX_HEADER_BYTES or start + length > len(data):
        raise ImageError(source, "display copy header is truncated or too large")
    try:
        header = json.loads(data[start : start + length])
        shape = tuple(int(n) for n in header["shape"])
        dtype = np.dtype(header["dtype"])
        affine = np.asarray(header["affine"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(source, f"display copy header is not readable ({exc})") from None
    if len(shape) != 3 or affine.shape != (4, 4):
        raise ImageError(source, "display copy is not a 3D volume")
    check_geometry(shape, affine, source, max_voxels)
    check_affine(affine, shape, source)
    check_dtype(dtype, source, labels=False)
    frame = memoryview(data)[start + length :]  # not a copy of the frame
    expected = int(np.prod(shape)) * dtype.itemsize
    try:
        declared, _, _ = blosc2.get_cbuffer_sizes(frame)
    except Exception as exc:  # noqa: BLE001 - blosc2 raises several types for a bad frame
        raise ImageError(source, f"display copy frame is not readable ({type(exc).__name__})") from None
    if declared != expected:
        raise ImageError(source, f"display copy frame holds {declared:,} bytes, its header says {expected:,}")
    out = np.empty(shape, dtype)  # the size the frame declared, checked above
    try:
        blosc2.decompress2(frame, dst=out)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(source, f"display copy frame is corrupt ({type(exc).__name__})") from None
    return Volume(out, affine)
