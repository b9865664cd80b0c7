"""The byte-bounded LRU never holds more than its limit."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.rendering.cache import ByteLRU


def test_evicts_least_recently_used_by_bytes():
    cache = ByteLRU(250, lambda a: a.nbytes)
    loads = []

    def loader(n):
        def load():
            loads.append(n)
            return np.zeros(100, np.uint8)

        return load

    cache.get("a", loader("a"))
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # hit: "a" becomes most recent
    cache.get("c", loader("c"))  # evicts "b"
    assert cache.bytes <= 250 and loads == ["a", "b", "c"]
    cache.get("b", loader("b"))
    assert loads[-1] == "b" and cache.bytes <= 250
    assert (cache.hits, cache.misses) == (1, 4)


def test_a_value_larger_than_the_limit_is_not_kept():
    cache = ByteLRU(50, lambda a: a.nbytes)
    assert cache.get("big", lambda: np.zeros(100, np.uint8)).nbytes == 100
    assert cache.bytes == 0


def test_failed_loads_leave_nothing_behind():
    """A caller asking for endless made-up ids (each load fails) must not grow the cache's books."""
    cache: ByteLRU[bytes] = ByteLRU(1024, len)

    def missing() -> bytes:
        raise KeyError("no such case")

    for i in range(5_000):
        with pytest.raises(KeyError):
            cache.get(("ct", f"made-up-{i}"), missing)
    assert (len(cache._loading), cache.bytes) == (0, 0)
