"""The case state machine. Anything not listed is refused with a clear error.

ingested -> predicted -> scored -> queued -> leased -> revised -> approved, with the way back:
leased -> queued (lease released or expired), revised -> queued (review rejected), and
re-prediction after a new model set for cases whose labels are still AI-made.
"""

from __future__ import annotations

from atlasloop.common.errors import Conflict

TRANSITIONS: dict[str, frozenset[str]] = {
    "ingested": frozenset({"predicted"}),
    "predicted": frozenset({"scored", "predicted"}),
    "scored": frozenset({"queued", "predicted"}),
    "queued": frozenset({"leased", "predicted"}),
    "leased": frozenset({"queued", "revised"}),
    "revised": frozenset({"approved", "queued"}),
    "approved": frozenset(),
}
STATES = tuple(TRANSITIONS)


def check(current: str, wanted: str) -> None:
    if wanted not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, ()))) or "none"
        raise Conflict(f"a case in state '{current}' cannot become '{wanted}' (allowed: {allowed})")
