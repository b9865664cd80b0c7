"""A display-ready copy of a CT: what a viewer reads to show the first picture of a case fast.

The stored ``ct.nii.gz`` is gzip: inflating a 512 x 512 x 300 int16 CT takes about 0.7 s here,
most of the 1.4 s to a first rendered slice. The display copy holds the same voxels compressed
with Blosc2 (LZ4 after a byte shuffle, multi-threaded), which decompress in about 0.1 s at a
similar size (``make bench``: rendering). Storage writes it beside the CT in the same write group;
the renderer reads it when it is there, and the NIfTI otherwise (cases imported before it existed).

Layout (version 2): ``ALDISP2\n``, a 4-byte little-endian header length, a JSON header (shape,
dtype, affine as stored, ``slab``: planes of the first axis per frame, ``frames``: each frame's
length), then one Blosc2 frame per slab of about 8 MB. Frames let a reader decompress a slab
while the next is still arriving (``decode_stream``): the renderer's cold load is the download or
the decompression, whichever is longer, not both. Version 1 (one frame for the whole volume),
written before, is still read. Reading checks the header's geometry and dtype with the same limits
as any volume, and each frame's declared size against its slab before it decompresses anything (no
decompression bomb).

``blosc2`` is imported with this module, not at first use: its import takes about 0.3 s here, which
a service that imports this module pays at start instead of on its first picture.
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import struct
import threading
from collections.abc import Iterable

import blosc2
import numpy as np

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.limits import check_affine, check_dtype
from atlasloop.imaging.volume import MAX_VOXELS, Volume, check_geometry

MAGIC_V1 = b"ALDISP1\n"
MAGIC = b"ALDISP2\n"
MAX_HEADER_BYTES = 64 * 1024
MAX_FRAME_BYTES = 2**31 - 1024  # one Blosc2 frame; a volume with a larger plane gets no display copy
SLAB_BYTES = 8 * 1024 * 1024  # raw bytes per frame: small enough to overlap, large enough to compress well
MAX_FRAMES = 65536


def encode(volume: Volume) -> bytes | None:
    """The display copy of ``volume``; None when one plane of its first axis is too large for a
    frame (the renderer then reads the NIfTI, as for a case without a copy)."""
    array = np.ascontiguousarray(volume.array, dtype=volume.array.dtype)
    plane = array[0].nbytes if array.shape[0] else 0
    if plane > MAX_FRAME_BYTES:
        return None
    slab = max(1, SLAB_BYTES // max(plane, 1))
    frames = [
        bytes(
            blosc2.compress2(
                array[start : start + slab].reshape(-1).view(np.uint8),
                typesize=array.dtype.itemsize,
                clevel=5,
                codec=blosc2.Codec.LZ4,
                filter=blosc2.Filter.SHUFFLE,
            )
        )
        for start in range(0, array.shape[0], slab)
    ]
    header = json.dumps(
        {
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "affine": volume.affine.tolist(),
            "slab": slab,
            "frames": [len(f) for f in frames],
        }
    ).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(frames)


def decode(data: bytes, source: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """The volume of a display copy held in memory, every claim checked before anything is allocated."""
    return decode_stream([data], source, max_voxels)


def decode_stream(chunks: Iterable[bytes], source: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """The volume of a display copy arriving as ``chunks`` (an object store's stream): each slab is
    decompressed as soon as its frame is complete, while a thread goes on reading the next."""
    with _Prefetch(chunks) as stream:
        magic = bytes(stream.read(len(MAGIC) + 4))
        if len(magic) < len(MAGIC) + 4 or magic[: len(MAGIC)] not in (MAGIC, MAGIC_V1):
            raise ImageError(source, "not a display copy")
        (length,) = struct.unpack_from("<I", magic, len(MAGIC))
        if length > MAX_HEADER_BYTES:
            raise ImageError(source, "display copy header is truncated or too large")
        raw = bytes(stream.read(length))
        if len(raw) < length:
            raise ImageError(source, "display copy header is truncated or too large")
        shape, dtype, affine, slab, frames = _header(
            raw, source, max_voxels, version=2 if magic.startswith(MAGIC) else 1
        )
        out = np.empty(shape, dtype)  # the size the header declared, checked
        plane = int(np.prod(shape[1:])) * dtype.itemsize
        for n, size in enumerate(frames):
            frame = stream.read(size) if size >= 0 else stream.read_all()
            rows = out[n * slab : (n + 1) * slab]
            _decompress(frame, rows, rows.shape[0] * plane, source)
        if stream.read(1):
            raise ImageError(source, "display copy holds bytes after its last frame")
    return Volume(out, affine)


def _header(
    raw: bytes, source: str, max_voxels: int, version: int
) -> tuple[tuple[int, ...], np.dtype, np.ndarray, int, list[int]]:
    try:
        header = json.loads(raw)
        shape = tuple(int(n) for n in header["shape"])
        dtype = np.dtype(header["dtype"])
        affine = np.asarray(header["affine"], dtype=np.float64)
        slab = int(header["slab"]) if version == 2 else max(shape[0], 1)
        frames = [int(n) for n in header["frames"]] if version == 2 else [-1]  # v1: one frame, to the end
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ImageError(source, f"display copy header is not readable ({exc})") from None
    if len(shape) != 3 or affine.shape != (4, 4):
        raise ImageError(source, "display copy is not a 3D volume")
    check_geometry(shape, affine, source, max_voxels)
    check_affine(affine, shape, source)
    check_dtype(dtype, source, labels=False)
    if version == 2:
        expected = -(-shape[0] // slab) if slab >= 1 else -1
        if slab < 1 or len(frames) != expected or len(frames) > MAX_FRAMES or min(frames, default=0) < 0:
            raise ImageError(source, "display copy frames do not cover its volume")
        if max(frames, default=0) > MAX_FRAME_BYTES:
            raise ImageError(source, "display copy declares a frame larger than any it may hold")
    return shape, dtype, affine, slab, frames


def _decompress(frame: bytes | bytearray | memoryview, out: np.ndarray, expected: int, source: str) -> None:
    """One frame into ``out`` (a contiguous slab), after checking the size it declares."""
    try:
        declared, compressed, _ = blosc2.get_cbuffer_sizes(frame)
    except Exception as exc:  # noqa: BLE001 - blosc2 raises several types for a bad frame
        raise ImageError(source, f"display copy frame is not readable ({type(exc).__name__})") from None
    if declared != expected:
        raise ImageError(source, f"display copy frame holds {declared:,} bytes, its header says {expected:,}")
    if compressed != len(frame):
        raise ImageError(source, "display copy frame is cut short")
    try:
        blosc2.decompress2(frame, dst=out)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(source, f"display copy frame is corrupt ({type(exc).__name__})") from None


class _Prefetch:
    """Bytes from an iterator of chunks, read ahead by a thread (at most ``depth`` chunks waiting)
    so that the network keeps delivering while the caller decompresses. An error in the reading
    thread is raised to the caller; leaving the ``with`` block stops the thread. Bytes already in
    memory (a list of chunks) are read without a thread. A read within one chunk is a view of it;
    a read across chunks copies each byte once (no growing buffer to append to and slice from:
    those were two more copies of the whole object)."""

    _END = object()

    def __init__(self, chunks: Iterable[bytes], depth: int = 16) -> None:
        self._chunks = chunks
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending: collections.deque[memoryview] = collections.deque()  # chunks not yet read
        self._head = 0  # bytes of the first pending chunk already read
        self._available = 0  # bytes pending, less the head
        self._done = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Prefetch:
        if isinstance(self._chunks, (list, tuple)):  # already in memory: nothing to overlap
            for chunk in self._chunks:
                self._add(chunk)
            self._done = True
        else:
            self._thread = threading.Thread(target=self._pump, name="display-copy-read", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():  # let a blocked put go through, then the thread sees the stop
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.05)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        chunks = iter(self._chunks)
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
            item: object = self._END
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            item = exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # a reader that stopped early releases the connection now, not at GC
                close()
        self._put(item)

    def _add(self, chunk: object) -> None:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"a stream of bytes was expected, it gave {type(chunk).__name__}")
        view = memoryview(chunk).cast("B")
        if len(view):
            self._pending.append(view)
            self._available += len(view)

    def _fill(self, size: int) -> None:
        while self._available < size and not self._done:
            item = self._queue.get()
            if item is self._END:
                self._done = True
            elif isinstance(item, BaseException):
                self._done = True
                raise item
            else:
                self._add(item)

    def read(self, size: int) -> bytes | bytearray | memoryview:
        """Up to ``size`` bytes (fewer only at the end)."""
        self._fill(size)
        size = min(size, self._available)
        if not size:
            return b""
        first = self._pending[0]
        if len(first) - self._head >= size:  # within one chunk: a view, no copy
            out: memoryview | bytearray = first[self._head : self._head + size]
            self._advance(size)
            return out
        out = bytearray(size)
        filled = 0
        while filled < size:
            first = self._pending[0]
            take = min(size - filled, len(first) - self._head)
            out[filled : filled + take] = first[self._head : self._head + take]
            filled += take
            self._advance(take)
        return out

    def _advance(self, size: int) -> None:
        self._head += size
        self._available -= size
        if self._head == len(self._pending[0]):
            self._pending.popleft()
            self._head = 0

    def read_all(self) -> bytes | bytearray | memoryview:
        return self.read(MAX_FRAME_BYTES + 1)
