"""The byte-bounded LRU never holds more than its limit."""

from __future__ import annotations

import numpy as np

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
