"""KeyedLocks: one holder per key, other keys free, and nothing kept for a key nobody holds."""

from __future__ import annotations

import threading
import time

import pytest

from atlasloop.common.keyed_locks import KeyedLocks


def test_one_holder_per_key_and_other_keys_unaffected():
    locks = KeyedLocks()
    inside: list[str] = []
    most = 0
    guard = threading.Lock()

    def work(key: str) -> None:
        nonlocal most
        with locks.hold(key):
            with guard:
                inside.append(key)
                most = max(most, inside.count("a"))
            time.sleep(0.02)
            with guard:
                inside.remove(key)

    threads = [threading.Thread(target=work, args=(k,)) for k in "aaaab"]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    with locks.hold("b"):  # "b" is not blocked by the four holders of "a"
        pass
    for thread in threads:
        thread.join()
    assert most == 1
    assert time.monotonic() - started >= 4 * 0.02
    assert len(locks) == 0


def test_keys_are_forgotten_once_released_even_when_the_holder_fails():
    locks = KeyedLocks()
    for i in range(10_000):
        with locks.hold(f"case-{i}"):
            assert len(locks) == 1
    for i in range(1_000):
        with pytest.raises(RuntimeError), locks.hold(f"made-up-{i}"):
            raise RuntimeError("load failed")
    assert len(locks) == 0
