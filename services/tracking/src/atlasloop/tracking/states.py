"""The case state machine. Anything not listed is refused with a clear error.

ingested -> predicted -> scored -> queued -> leased -> revised -> approved, with the way back:
leased -> queued (lease released or expired), revised -> queued (review rejected), and
re-prediction after a new model set for cases whose labels are still AI-made.
"""

from __future__ import annotations

from atlasloop.common.domain import CaseState as S
from atlasloop.common.errors import Conflict

TRANSITIONS: dict[S, frozenset[S]] = {
    S.INGESTED: frozenset({S.PREDICTED}),
    S.PREDICTED: frozenset({S.SCORED, S.PREDICTED}),
    S.SCORED: frozenset({S.QUEUED, S.PREDICTED}),
    S.QUEUED: frozenset({S.LEASED, S.PREDICTED}),
    S.LEASED: frozenset({S.QUEUED, S.REVISED}),
    S.REVISED: frozenset({S.APPROVED, S.QUEUED}),
    S.APPROVED: frozenset(),
}
STATES = tuple(TRANSITIONS)


def check(current: str, wanted: str) -> None:
    allowed_states = TRANSITIONS.get(current, frozenset())  # type: ignore[call-overload]
    if wanted not in allowed_states:
        allowed = ", ".join(sorted(allowed_states)) or "none"
        raise Conflict(f"a case in state '{current}' cannot become '{wanted}' (allowed: {allowed})")
