"""Budgeted selection of a round's cases: a fraction or a count, optional per-organ quotas, and
never the same case twice in one round."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from atlasloop.common.errors import InvalidInput


@dataclass(frozen=True)
class Candidate:
    case_id: str
    priority: float
    organ_scores: Mapping[str, float]
    organ_order: tuple[str, ...]


def budget(total: int, fraction: float, max_cases: int) -> int:
    if max_cases < 0 or not 0 <= fraction <= 1:
        raise InvalidInput("max_cases must be >= 0 and fraction in [0, 1]")
    if max_cases:
        return min(max_cases, total)
    if fraction:
        return min(total, math.ceil(fraction * total))
    raise InvalidInput("give a budget: a fraction in (0, 1] or max_cases > 0")


def select(candidates: Sequence[Candidate], count: int, quotas: Mapping[str, int] | None = None) -> list[Candidate]:
    """Quotas first (each organ's best-scoring cases), then the rest by priority; ties keep input order."""
    quotas = dict(quotas or {})
    if sum(quotas.values()) > count:
        raise InvalidInput(f"organ quotas ask for {sum(quotas.values())} cases, more than the budget of {count}")
    if any(n < 0 for n in quotas.values()):
        raise InvalidInput("quotas must be >= 0")
    chosen: dict[str, Candidate] = {}
    for organ, wanted in quotas.items():
        ranked = sorted(
            (c for c in candidates if c.organ_scores.get(organ, 0) > 0 and c.case_id not in chosen),
            key=lambda c: -c.organ_scores[organ],
        )
        for candidate in ranked[:wanted]:
            chosen[candidate.case_id] = candidate
    for candidate in sorted(candidates, key=lambda c: -c.priority):
        if len(chosen) >= count:
            break
        chosen.setdefault(candidate.case_id, candidate)
    return sorted(chosen.values(), key=lambda c: -c.priority)
