"""At most ``slots`` holders at a time, admitted in the order they arrived.

The rendering service draws pictures on a pool of gRPC threads. A page scrolling fast asks for the
next slices all at once (its prefetch); drawn side by side on two cores, the picture needed first
finishes with the last of them, about four pictures' time later. Admitted in arrival order, one
drawing per core, it finishes first and the others follow one picture's time apart. A
``threading.Semaphore`` does not promise an order; this gate does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class FifoGate:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots = slots
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._busy = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """A slot for the caller, once every earlier caller has one and a slot is free."""
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            try:
                while self._waiting[0] is not ticket or self._busy >= self.slots:
                    self._changed.wait()
            except BaseException:
                self._waiting.remove(ticket)
                self._changed.notify_all()
                raise
            self._waiting.popleft()
            self._busy += 1
            self._changed.notify_all()  # the next in line may take another free slot
        try:
            yield
        finally:
            with self._changed:
                self._busy -= 1
                self._changed.notify_all()

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)
