"""FifoGate: at most ``slots`` holders, admitted in arrival order; a failure frees its slot."""

from __future__ import annotations

import threading
import time

import pytest

from atlasloop.rendering.fifo_gate import FifoGate


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiters_are_admitted_in_the_order_they_arrived():
    gate = FifoGate(1)
    admitted: list[int] = []

    def take(n: int) -> None:
        with gate.hold():
            admitted.append(n)

    with gate.hold():  # the slot is taken: everyone after this waits
        threads = []
        for n in range(12):
            threads.append(threading.Thread(target=take, args=(n,)))
            threads[-1].start()
            _wait_for(lambda n=n: gate.waiting == n + 1)  # n arrived after n - 1
    for thread in threads:
        thread.join(5)
    assert admitted == list(range(12))


def test_no_more_than_slots_hold_at_once():
    gate = FifoGate(2)
    holding, most = 0, 0
    count = threading.Lock()

    def work() -> None:
        nonlocal holding, most
        with gate.hold():
            with count:
                holding += 1
                most = max(most, holding)
            time.sleep(0.01)
            with count:
                holding -= 1

    threads = [threading.Thread(target=work) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most == 2 and holding == 0 and gate.waiting == 0


def test_a_holder_that_fails_frees_its_slot():
    gate = FifoGate(1)
    with pytest.raises(RuntimeError), gate.hold():
        raise RuntimeError("drawing failed")
    entered = threading.Event()

    def enter() -> None:
        with gate.hold():
            entered.set()

    threading.Thread(target=enter, daemon=True).start()
    assert entered.wait(5)


def test_a_gate_needs_a_slot():
    with pytest.raises(ValueError):
        FifoGate(0)
