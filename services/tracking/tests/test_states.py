"""The case state machine refuses what it does not list."""

from __future__ import annotations

import pytest

from atlasloop.common.errors import Conflict
from atlasloop.tracking import states


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ingested", "predicted"),
        ("predicted", "scored"),
        ("scored", "queued"),
        ("queued", "leased"),
        ("leased", "revised"),
        ("revised", "approved"),
        ("revised", "queued"),
        ("leased", "queued"),
        ("scored", "predicted"),
    ],
)
def test_allowed(a, b):
    states.check(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ingested", "queued"),
        ("approved", "queued"),
        ("queued", "revised"),
        ("predicted", "leased"),
        ("revised", "leased"),
    ],
)
def test_refused_with_a_clear_message(a, b):
    with pytest.raises(Conflict, match=f"state '{a}' cannot become '{b}'"):
        states.check(a, b)
