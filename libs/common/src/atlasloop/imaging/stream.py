"""Load a NIfTI volume from a stream of (gzip-compressed) chunks, as they arrive.

For services that read volumes from the object store: no temporary file and no second copy, and
inflating overlaps the download. The header is parsed as soon as its bytes are in, the array is
allocated once from the validated shape (refused before allocation when absurd), and the voxel
bytes are copied into it chunk by chunk. Same checks as :func:`atlasloop.imaging.volume.load_nifti`.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator

import nibabel as nib
import numpy as np

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.limits import check_affine, check_claim, check_dtype
from atlasloop.imaging.volume import MAX_VOXELS, Volume, check_geometry


def _header(data: bytes, source: str) -> nib.Nifti1Header | None:
    if len(data) < 4:
        return None
    size = int.from_bytes(data[:4], "little")
    if size not in (348, 540):
        size = int.from_bytes(data[:4], "big")
    klass = {348: nib.Nifti1Header, 540: nib.Nifti2Header}.get(size)
    if klass is None:
        raise ImageError(source, "not a NIfTI file (unknown header size)")
    if len(data) < size:
        return None
    try:
        header: nib.Nifti1Header = klass.from_fileobj(io.BytesIO(data[:size]))
        return header
    except Exception as exc:  # noqa: BLE001 - nibabel raises several types for a bad header
        raise ImageError(source, f"not a readable NIfTI header ({exc})") from None


def load_nifti_chunks(chunks: Iterator[bytes], source: str, max_voxels: int = MAX_VOXELS) -> Volume:
    inflate = zlib.decompressobj(wbits=47)  # gzip or zlib framing, detected from the header
    head = bytearray()
    header = None
    out: np.ndarray | None = None
    offset = filled = 0
    gzipped = None
    for chunk in chunks:
        if gzipped is None:
            gzipped = chunk[:2] == b"\x1f\x8b"
        try:
            data = inflate.decompress(chunk) if gzipped else chunk
            while gzipped and inflate.eof and inflate.unused_data:  # a further gzip member
                rest = inflate.unused_data
                inflate = zlib.decompressobj(wbits=47)
                data += inflate.decompress(rest)
        except zlib.error as exc:
            raise ImageError(source, f"corrupt compressed data ({exc})") from None
        if out is None:
            head += data
            header = _header(bytes(head[:540]), source)
            if header is None:
                continue
            shape = tuple(int(n) for n in header.get_data_shape())
            if len(shape) == 4 and shape[3] == 1:
                shape = shape[:3]
            check_geometry(shape, header.get_best_affine(), source, max_voxels)
            check_affine(header.get_best_affine(), shape, source)
            dtype = header.get_data_dtype()
            check_dtype(dtype, source, labels=False)
            check_claim(shape, dtype, source, None, bool(gzipped))
            offset = int(header.get_data_offset())
            out = np.empty(int(np.prod(shape)) * dtype.itemsize, np.uint8)
            data, head = bytes(head[offset:]), bytearray()
        take = min(len(data), out.size - filled)
        out[filled : filled + take] = np.frombuffer(data, np.uint8, count=take)
        filled += take
    if out is None or header is None:
        raise ImageError(source, "ended before the NIfTI header was complete")
    if filled != out.size:
        raise ImageError(source, f"voxel data is truncated: {filled:,} of {out.size:,} bytes")
    shape = tuple(int(n) for n in header.get_data_shape())[:3]
    array = out.view(header.get_data_dtype()).reshape(shape, order="F")
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        array = array * np.float32(slope) + np.float32(inter or 0)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ImageError(source, "contains NaN or infinite voxels")
    return Volume(array, header.get_best_affine())
