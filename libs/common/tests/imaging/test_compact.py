"""Stored attention maps read lazily: the same organs as the eager reader, each inflated once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from atlasloop.imaging.compact import AttentionMaps, Cropped, LazyOrgans


def _maps() -> AttentionMaps:
    rng = np.random.default_rng(3)
    organs = {
        "liver": Cropped(((2, 30), (4, 20), (1, 9)), rng.integers(0, 256, (28, 16, 8), dtype=np.uint8)),
        "spleen": Cropped(((0, 5), (0, 6), (0, 7)), rng.integers(0, 256, (5, 6, 7), dtype=np.uint8)),
        "pancreas": Cropped(None, np.zeros((0, 0, 0), np.uint8)),  # no heat at all
    }
    return AttentionMaps((40, 30, 12), np.diag([0.8, 0.8, 2.5, 1.0]), organs)


def test_lazy_organs_equal_the_eager_reader_and_inflate_only_what_is_asked():
    data = _maps().to_bytes()
    eager = AttentionMaps.from_bytes(data)
    lazy = LazyOrgans(data)
    assert lazy.shape == eager.shape and np.array_equal(lazy.affine, eager.affine)
    assert list(lazy) == list(eager.organs) and len(lazy) == 3
    assert lazy._inflated == {}  # nothing inflated by opening it
    liver = lazy["liver"]
    assert liver.box == eager.organs["liver"].box and np.array_equal(liver.data, eager.organs["liver"].data)
    assert set(lazy._inflated) == {"liver"} and lazy["liver"] is liver  # once
    assert lazy["pancreas"].box is None and lazy.get("brain") is None
    with pytest.raises(KeyError):
        lazy["brain"]
    assert lazy.nbytes >= len(data) + sum(c.data.nbytes for c in eager.organs.values())


def test_lazy_organs_read_from_several_threads_get_the_same_arrays():
    data = _maps().to_bytes()
    eager = AttentionMaps.from_bytes(data)
    lazy = LazyOrgans(data)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda organ: lazy[organ], ["liver", "spleen"] * 20))
    for organ, crop in zip(["liver", "spleen"] * 20, got, strict=True):
        assert np.array_equal(crop.data, eager.organs[organ].data)
