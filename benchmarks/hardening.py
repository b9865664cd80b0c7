"""The bad-input suite's size, as ``make bench`` reports it (issue #18): how many hostile inputs
``tests/integration/test_bad_input.py`` sends, by service and by what they attack. The suite itself
runs in ``make test``; this only counts its table."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path


def bad_inputs() -> Iterator[str]:
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.integration.bad_inputs import CASES, count_by

    yield f"bad-input suite: {len(CASES)} hostile inputs, plus 2 hostile events"
    yield "by service: " + ", ".join(f"{k} {v}" for k, v in sorted(count_by("service").items()))
    yield "by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(count_by("kind").items()))
