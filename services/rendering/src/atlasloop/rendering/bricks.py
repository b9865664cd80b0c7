"""A volume read brick by brick from a display copy (version 3): the bricks a picture needs, by
ranged GETs, when it needs them.

A cold case's first screen is three planes. Reading the whole copy before drawing any of them put
the download and decompression of every voxel on the first picture's path (ADR 0009); the three
planes of a 512 x 512 x 300 CT need 124 of its 320 bricks. ``BrickedVolume.plane`` loads what one
plane needs, each brick decoded into an array of its own, and cuts the plane from them. Scrolling
reads the next layer of bricks when it gets there (the page asks four slices ahead, so a layer
is usually loaded before the move that shows it). Whole-volume readers (exports, contact sheets,
most salient slices) call ``ensure_all``, which gathers the bricks into one array and loads the
rest into it; planes are views of that array afterwards.

Measured in ``make bench`` (ADR 0009, third addendum): a thread that loaded the remaining bricks
behind the first picture made the first moves slower (back to back, p95 176-204 ms against 161 ms)
and the first picture no faster, on two cores shared with the browser. And a plane is not cut from
one whole array filled as bricks arrive: writing a brick there touches every memory page its rows
cross, and an axial brick's rows cross every page of a C-ordered volume; fresh pages are dear on
some machines (about 2 ms per MB the first time a virtual machine's memory is used, here).

Each brick is loaded by exactly one thread: a caller claims the bricks it needs, waits for those
another thread has claimed, and a brick whose load failed is released so that the next caller tries
again. States: missing, loading (claimed), decoded (in an array of its own), done (in the whole
array).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from atlasloop.imaging import display_copy
from atlasloop.imaging.display import RasVolume, to_ras
from atlasloop.imaging.display_copy import Layout
from atlasloop.imaging.errors import ImageError

Fetch = Callable[[int, int], bytes]  # (offset, length) -> the object's bytes there

RANGE_BYTES = 4 * 1024 * 1024  # at most this much per GET: a plane's bricks come in parallel ranges
MISSING, LOADING, DECODED, DONE = 0, 1, 2, 3
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="brick-get")  # GETs wait on the network


HEAD_BYTES = display_copy.PREFIX_BYTES + display_copy.MAX_HEADER_BYTES  # the first GET: any header fits


def read_layout(fetch: Fetch, source: str) -> tuple[Layout, bytes]:
    """A copy's layout from one ranged GET of its start (the header is bounded), and the bytes that
    GET returned: the whole object when it is shorter than ``HEAD_BYTES``."""
    start = fetch(0, HEAD_BYTES)
    length = display_copy.header_length(start[: display_copy.PREFIX_BYTES], source)
    raw = start[display_copy.PREFIX_BYTES : display_copy.PREFIX_BYTES + length]
    if len(raw) < length:
        raise ImageError(source, "display copy header is truncated or too large")
    return display_copy.read_header(start[: display_copy.PREFIX_BYTES], raw, source), start


def _cut(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Plane ``index`` of ``axis``, one voxel thick (a view)."""
    cut: list[slice] = [slice(None)] * 3
    cut[axis] = slice(index, index + 1)
    return array[tuple(cut)]


class CompleteVolume:
    """A volume already in memory (a NIfTI, or a copy written before bricks): nothing to load."""

    def __init__(self, volume: RasVolume) -> None:
        self.volume = volume
        self.nbytes = volume.nbytes

    def plane(self, ras_axis: int, index: int) -> np.ndarray:
        return _cut(self.volume.array, ras_axis, index)

    def ensure_all(self) -> RasVolume:
        return self.volume


class BrickedVolume:
    def __init__(self, layout: Layout, fetch: Fetch, source: str) -> None:
        self.layout = layout
        self._fetch = fetch
        self._source = source
        self._out = np.empty(layout.shape, layout.dtype)  # no page is touched until a brick lands
        self.volume = to_ras(self._out, layout.affine)  # its geometry now, its voxels once complete
        self.nbytes = int(self._out.nbytes)
        self._to_ras = ornt_transform(io_orientation(layout.affine), axcodes2ornt("RAS"))
        # RAS axis -> (stored axis, whether RAS counts it backwards)
        self._stored = {int(self._to_ras[s, 0]): (s, bool(self._to_ras[s, 1] < 0)) for s in range(3)}
        self._state = np.zeros(len(layout.frames), np.int8)
        self._decoded: dict[int, np.ndarray] = {}  # bricks a picture needed, not yet in the array
        self._moving: set[int] = set()  # decoded bricks a thread is copying into the array
        self._changed = threading.Condition()

    @property
    def complete(self) -> bool:
        with self._changed:
            return bool((self._state == DONE).all())

    def plane(self, ras_axis: int, index: int) -> np.ndarray:
        """RAS plane ``index`` of ``ras_axis``, one voxel thick: a view once the array is complete,
        else cut from the plane's bricks (loaded now if need be)."""
        if self.complete:
            return _cut(self.volume.array, ras_axis, index)
        stored, backwards = self._stored[ras_axis]
        if not 0 <= index < self.layout.shape[stored]:
            raise ImageError(self._source, f"plane {index} is outside the volume")
        at = self.layout.shape[stored] - 1 - index if backwards else index
        wanted = self.layout.on_plane(stored, at)
        self._settle(wanted, into_array=False)
        with self._changed:  # a brick still decoded is read from its own buffer, one done from the array
            sources = {n: self._decoded.get(n) for n in wanted}
        shape = list(self.layout.shape)
        shape[stored] = 1
        slab = np.empty(shape, self.layout.dtype)
        for n in wanted:
            region = list(self.layout.region(n))
            brick = sources[n]
            if brick is None:
                picked = _cut(self._out[tuple(region)], stored, at - region[stored].start)
            else:
                picked = _cut(brick, stored, at - region[stored].start)
            region[stored] = slice(0, 1)
            slab[tuple(region)] = picked
        return apply_orientation(slab, self._to_ras)

    def ensure_all(self) -> RasVolume:
        self._settle(range(len(self.layout.frames)), into_array=True)
        return self.volume

    def _settle(self, wanted: Iterable[int], into_array: bool) -> None:
        """Every brick of ``wanted`` decoded or done (``into_array``: done)."""
        wanted = np.fromiter(wanted, np.int64)
        ready = (DONE,) if into_array else (DECODED, DONE)
        while True:
            with self._changed:
                state = self._state[wanted]
                fetch = wanted[state == MISSING]
                self._state[fetch] = LOADING
                move = [n for n in wanted[state == DECODED].tolist() if n not in self._moving] if into_array else []
                self._moving.update(move)
                moving = {n: self._decoded[n] for n in move}
            self._place(moving)
            if fetch.size:
                self._load(fetch, into_array)
            with self._changed:
                while (self._state[wanted] == LOADING).any() or (into_array and self._moving & set(wanted.tolist())):
                    self._changed.wait()
                if np.isin(self._state[wanted], ready).all():
                    return
            # another thread's load of some of them failed: they are missing again, claim them

    def _place(self, moving: dict[int, np.ndarray]) -> None:
        """Decoded bricks this thread claimed, copied into the array. A brick stays decoded (and
        readable from its own buffer) until its copy is whole."""
        try:
            for n, brick in moving.items():
                self._out[self.layout.region(n)] = brick
                with self._changed:
                    self._state[n] = DONE
                    del self._decoded[n]
                    self._moving.discard(n)
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._moving.difference_update(moving)
                self._changed.notify_all()

    def _load(self, claimed: np.ndarray, into_array: bool) -> None:
        """Fetch and decompress bricks this thread claimed, a range per thread of the pool; on
        failure release the rest."""
        try:
            runs = self._runs(claimed)
            if len(runs) == 1:
                self._load_run(runs[0], into_array)
            else:
                for future in [_POOL.submit(self._load_run, run, into_array) for run in runs]:
                    future.result()
        finally:
            with self._changed:
                unfinished = claimed[self._state[claimed] == LOADING]
                self._state[unfinished] = MISSING
                self._changed.notify_all()

    def _runs(self, bricks: np.ndarray) -> list[list[int]]:
        """Bricks (sorted) in runs adjacent in the object, each at most ``RANGE_BYTES`` long (a
        brick longer than that is a run of its own)."""
        offsets = self.layout.offsets
        runs: list[list[int]] = []
        for n in np.sort(bricks).tolist():
            run = runs[-1] if runs else None
            if run and run[-1] == n - 1 and offsets[n + 1] - offsets[run[0]] <= RANGE_BYTES:
                run.append(n)
            else:
                runs.append([n])
        return runs

    def _load_run(self, run: list[int], into_array: bool) -> None:
        offsets = self.layout.offsets
        start, end = int(offsets[run[0]]), int(offsets[run[-1] + 1])
        data = memoryview(self._fetch(start, end - start)) if end > start else memoryview(b"")
        if len(data) != end - start:
            raise ImageError(self._source, "display copy is shorter than its header says")
        for n in run:
            frame = data[int(offsets[n]) - start : int(offsets[n + 1]) - start]
            region = self.layout.region(n)
            if into_array:
                display_copy.decompress_into(frame, self._out, region, self._source)
            else:
                brick = np.empty(tuple(r.stop - r.start for r in region), self.layout.dtype)
                display_copy.decompress_into(frame, brick, (slice(None),) * 3, self._source)
            with self._changed:
                if not into_array:
                    self._decoded[n] = brick
                self._state[n] = DONE if into_array else DECODED
                self._changed.notify_all()
