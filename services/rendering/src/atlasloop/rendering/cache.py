"""A bounded in-memory cache, least recently used out first, sized by the bytes of its values.

Scrolling through a case reads the CT once; the limit is never exceeded (a value larger than the
whole limit is handed back without being kept).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from atlasloop.common.keyed_locks import KeyedLocks

V = TypeVar("V")


class ByteLRU(Generic[V]):
    def __init__(self, limit_bytes: int, size_of: Callable[[V], int]) -> None:
        self.limit = limit_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = KeyedLocks()  # one loader per key; an entry lives only while it loads
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
        with self._loading.hold(key):  # others asking for the key wait for this load's result
            with self._lock:
                if key in self._items:
                    self.hits += 1
                    return self._items[key][0]
            value = load()
            size = self._size_of(value)
            with self._lock:
                self.misses += 1
                if size > self.limit:
                    return value
                self._items[key] = (value, size)
                self.bytes += size
                while self.bytes > self.limit:
                    _, (_, evicted) = self._items.popitem(last=False)
                    self.bytes -= evicted
            return value
