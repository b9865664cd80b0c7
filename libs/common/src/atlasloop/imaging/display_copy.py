"""A display-ready copy of a CT or label version: what a viewer reads to show a case's first
pictures fast.

The stored ``ct.nii.gz`` is gzip: inflating a 512 x 512 x 300 int16 CT takes about 0.7 s here,
most of the 1.4 s to a first rendered slice. The display copy holds the same voxels compressed
with Blosc2 (LZ4 after a byte shuffle), which decompress in about 0.1 s at a similar size
(``make bench``: rendering). Storage writes it beside the volume in the same write group; the
renderer reads it when it is there, and the NIfTI otherwise (cases imported before it existed).

Layout (version 3): ``ALDISP3\\n``, a 4-byte little-endian header length, a JSON header (shape,
dtype, affine as stored, ``brick``: the edge of a cubic brick in voxels, ``order``: the stored
axes from slowest to fastest in the brick sequence, ``frames``: each brick's compressed length),
then one Blosc2 frame per brick of ``brick``\\ :sup:`3` voxels (cut at the volume's edges).

Why bricks (ADR 0009, third addendum): a viewer's first screen is three planes, axial, coronal
and sagittal, and with slabs along one axis two of them needed the whole volume (on this machine
0.65 s of the first picture's 1.0-1.25 s went to reading and decompressing all of it). With
64-voxel bricks the three planes of a 512 x 512 x 300 CT need 124 of its 320 bricks; a reader
with ranged GETs (``rendering.bricks``) fetches those first and the rest behind them. The axis
that points superior is slowest in the sequence, so the bricks of an axial plane, the plane
scrolled most, are one contiguous range of the object.

Version 2 (slabs of the first axis, about 8 MB raw each) is still written for volumes read whole,
label versions (``encode(..., bricks=False)``), and version 1 (one frame), written before, is still
read.
``decode_stream`` reads any version as it streams in: each frame is decompressed as soon as it is
complete, while a thread goes on reading the next. Reading checks the header's geometry and dtype
with the same limits as any volume, and each frame's declared size against its region before it
decompresses anything (no decompression bomb).

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import blosc2
import numpy as np
from nibabel.orientations import io_orientation

from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.limits import check_affine, check_dtype
from atlasloop.imaging.volume import MAX_VOXELS, Volume, check_geometry

MAGIC_V1 = b"ALDISP1\n"
MAGIC_V2 = b"ALDISP2\n"
MAGIC = b"ALDISP3\n"
PREFIX_BYTES = len(MAGIC) + 4  # magic and header length
MAX_HEADER_BYTES = 256 * 1024
MAX_FRAME_BYTES = 2**31 - 1024  # one Blosc2 frame
BRICK = 64  # voxels along each edge: 512 KiB of int16, small enough to skip, large enough to compress well
SLAB_BYTES = 8 * 1024 * 1024  # raw bytes per frame of a version 2 copy (read whole, while it downloads)
BRICK_LIMITS = (8, 512)
MAX_FRAMES = 65536


@dataclass(frozen=True)
class Layout:
    """Where each frame's voxels and bytes are, read from (and checked against) a copy's header."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    affine: np.ndarray
    frames: tuple[int, ...]  # compressed lengths, in the object's order
    data_offset: int  # where the first frame starts in the object
    brick: tuple[int, int, int]  # a frame's extent along each stored axis
    order: tuple[int, int, int]  # stored axes, slowest first in the frame sequence
    version: int = 3  # 1: one frame, 2: slabs of the first axis, 3: bricks

    @cached_property
    def grid(self) -> tuple[int, int, int]:
        return tuple(-(-n // b) for n, b in zip(self.shape, self.brick, strict=True))  # type: ignore[return-value]

    @cached_property
    def offsets(self) -> np.ndarray:
        """Each frame's first byte in the object, and the end of the last."""
        return self.data_offset + np.concatenate([[0], np.cumsum(self.frames, dtype=np.int64)])

    @cached_property
    def positions(self) -> np.ndarray:
        """Each frame's brick coordinates along the stored axes, (frames, 3)."""
        slow, middle, fast = self.order
        at = np.indices([self.grid[slow], self.grid[middle], self.grid[fast]]).reshape(3, -1)
        out = np.empty((at.shape[1], 3), np.int64)
        out[:, [slow, middle, fast]] = at.T
        return out

    def position(self, n: int) -> tuple[int, int, int]:
        """Frame ``n``'s brick coordinates along the stored axes."""
        a, b, c = self.positions[n].tolist()
        return a, b, c

    def region(self, n: int) -> tuple[slice, slice, slice]:
        """The stored voxels frame ``n`` holds."""
        at = self.position(n)
        return tuple(  # type: ignore[return-value]
            slice(p * b, min((p + 1) * b, size)) for p, b, size in zip(at, self.brick, self.shape, strict=True)
        )

    def on_plane(self, axis: int, index: int) -> list[int]:
        """The frames holding stored plane ``index`` of ``axis``, in the object's order."""
        if not 0 <= index < self.shape[axis]:
            raise ImageError("display copy", f"plane {index} is outside the volume's {self.shape[axis]}")
        return np.flatnonzero(self.positions[:, axis] == index // self.brick[axis]).tolist()


def _brick_order(affine: np.ndarray) -> tuple[int, int, int]:
    """Stored axes slowest first: the one pointing superior (axial planes are one range), then the
    anterior one, then the lateral one."""
    ras_of = io_orientation(affine)[:, 0].astype(int)  # the RAS axis of each stored axis
    return tuple(sorted(range(3), key=lambda axis: -ras_of[axis]))  # type: ignore[return-value]


def encode(volume: Volume, bricks: bool = True) -> bytes:
    """The display copy of ``volume``. ``bricks``: version 3, one frame per brick in
    ``_brick_order``, for a volume read plane by plane (a CT in the renderer). Otherwise version 2,
    one frame per slab of about ``SLAB_BYTES`` of the first axis, for a volume read whole (a label
    version, which the page paints on): slabs decompress straight into the volume, where each brick
    goes through a buffer into strided rows (a 512 x 512 x 300 label map: 12 against 73 ms)."""
    array = volume.array
    shape = tuple(int(n) for n in array.shape)
    plane = int(np.prod(shape[1:])) * array.dtype.itemsize
    fields: dict[str, object]
    brick: tuple[int, ...]
    if bricks or plane > MAX_FRAME_BYTES:
        magic, order, brick = MAGIC, _brick_order(volume.affine), (BRICK, BRICK, BRICK)
        fields = {"brick": BRICK, "order": list(order)}
    else:
        slab = max(1, SLAB_BYTES // max(plane, 1))
        magic, order, brick = MAGIC_V2, (0, 1, 2), (slab, *shape[1:])
        fields = {"slab": slab}
    layout = Layout(shape, array.dtype, volume.affine, (0,) * _count(shape, brick), 0, brick, order)  # type: ignore[arg-type]
    frames = [
        blosc2.compress2(
            np.ascontiguousarray(array[layout.region(n)]).reshape(-1).view(np.uint8),
            typesize=array.dtype.itemsize,
            clevel=5,
            codec=blosc2.Codec.LZ4,
            filter=blosc2.Filter.SHUFFLE,
        )
        for n in range(len(layout.frames))
    ]
    header = {"shape": list(shape), "dtype": array.dtype.str, "affine": volume.affine.tolist(), **fields}
    raw = json.dumps(header | {"frames": [len(f) for f in frames]}).encode()
    return b"".join([magic, struct.pack("<I", len(raw)), raw, *frames])


def _count(shape: Sequence[int], brick: Sequence[int]) -> int:
    return int(np.prod([-(-n // b) for n, b in zip(shape, brick, strict=True)]))


def decode(data: bytes, source: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """The volume of a display copy held in memory, every claim checked before anything is allocated."""
    return decode_stream([data], source, max_voxels)


def decode_stream(chunks: Iterable[bytes], source: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """The volume of a display copy arriving as ``chunks`` (an object store's stream): each frame is
    decompressed as soon as it is complete, while a thread goes on reading the next."""
    with _Prefetch(chunks) as stream:
        prefix = bytes(stream.read(PREFIX_BYTES))
        length = header_length(prefix, source)
        raw = bytes(stream.read(length))
        if len(raw) < length:
            raise ImageError(source, "display copy header is truncated or too large")
        layout = read_header(prefix, raw, source, max_voxels)
        out = np.empty(layout.shape, layout.dtype)  # the size the header declared, checked
        for n, size in enumerate(layout.frames):
            frame = stream.read(size) if size >= 0 else stream.read_all()
            decompress_into(frame, out, layout.region(n), source)
        if stream.read(1):
            raise ImageError(source, "display copy holds bytes after its last frame")
    return Volume(out, layout.affine)


def header_length(prefix: bytes, source: str) -> int:
    """The header's length from a copy's first ``PREFIX_BYTES``, after checking the magic."""
    if len(prefix) < PREFIX_BYTES or prefix[: len(MAGIC)] not in (MAGIC, MAGIC_V2, MAGIC_V1):
        raise ImageError(source, "not a display copy")
    (length,) = struct.unpack_from("<I", prefix, len(MAGIC))
    if length > MAX_HEADER_BYTES:
        raise ImageError(source, "display copy header is truncated or too large")
    return int(length)


def read_header(prefix: bytes, raw: bytes, source: str, max_voxels: int = MAX_VOXELS) -> Layout:
    """The layout a copy's header declares, every claim checked against the volume limits."""
    version = {MAGIC_V1: 1, MAGIC_V2: 2, MAGIC: 3}[prefix[: len(MAGIC)]]
    try:
        header = json.loads(raw)
        shape = tuple(int(n) for n in header["shape"])
        dtype = np.dtype(header["dtype"])
        affine = np.asarray(header["affine"], dtype=np.float64)
        frames = tuple(int(n) for n in header["frames"]) if version > 1 else (-1,)  # v1: one frame, to the end
        brick: tuple[int, ...]
        order: tuple[int, ...]
        if version == 3:
            brick = (int(header["brick"]),) * 3
            order = tuple(int(n) for n in header["order"])
        else:  # slabs of the first axis, in order
            slab = int(header["slab"]) if version == 2 else max(shape[0], 1)
            brick, order = (slab, *shape[1:]), (0, 1, 2)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ImageError(source, f"display copy header is not readable ({exc})") from None
    if len(shape) != 3 or affine.shape != (4, 4):
        raise ImageError(source, "display copy is not a 3D volume")
    check_geometry(shape, affine, source, max_voxels)
    check_affine(affine, shape, source)
    check_dtype(dtype, source, labels=False)
    if version == 3 and (not BRICK_LIMITS[0] <= brick[0] <= BRICK_LIMITS[1] or sorted(order) != [0, 1, 2]):
        raise ImageError(source, "display copy bricks are not ones it may hold")
    if min(brick) < 1 or len(frames) > MAX_FRAMES or (version > 1 and len(frames) != _count(shape, brick)):
        raise ImageError(source, "display copy frames do not cover its volume")
    if version > 1 and min(frames, default=0) < 0:
        raise ImageError(source, "display copy frames do not cover its volume")
    if max(frames, default=0) > MAX_FRAME_BYTES:
        raise ImageError(source, "display copy declares a frame larger than any it may hold")
    return Layout(shape, dtype, affine, frames, PREFIX_BYTES + len(raw), brick, order, version)  # type: ignore[arg-type]


def decompress_into(
    frame: bytes | bytearray | memoryview, out: np.ndarray, region: tuple[slice, ...], source: str
) -> None:
    """One frame into ``out[region]``, after checking the size it declares: straight into ``out``
    when the region is contiguous (a slab), through a brick-sized buffer otherwise."""
    target = out[region]
    try:
        declared, compressed, _ = blosc2.get_cbuffer_sizes(frame)
    except Exception as exc:  # noqa: BLE001 - blosc2 raises several types for a bad frame
        raise ImageError(source, f"display copy frame is not readable ({type(exc).__name__})") from None
    if declared != target.nbytes:
        raise ImageError(source, f"display copy frame holds {declared:,} bytes, its header says {target.nbytes:,}")
    if compressed != len(frame):
        raise ImageError(source, "display copy frame is cut short")
    contiguous = target.flags.c_contiguous
    buffer = target if contiguous else np.empty(target.shape, target.dtype)
    try:
        blosc2.decompress2(frame, dst=buffer)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(source, f"display copy frame is corrupt ({type(exc).__name__})") from None
    if not contiguous:
        target[...] = buffer


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
