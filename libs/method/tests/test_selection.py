"""Budgeted selection: fraction or count, quotas, each case at most once."""

from __future__ import annotations

import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.method.selection import Candidate, budget, select


def _c(case, priority, **organs):
    return Candidate(case, priority, organs, tuple(organs))


CASES = [_c("a", 10, liver=10), _c("b", 8, liver=8), _c("c", 3, pancreas=3), _c("d", 1, pancreas=5)]


def test_budget_from_fraction_or_count():
    assert budget(40, 0.05, 0) == 2 and budget(40, 0.0, 7) == 7 and budget(3, 0.0, 10) == 3
    with pytest.raises(InvalidInput, match="budget"):
        budget(10, 0.0, 0)


def test_priority_order_without_quotas():
    assert [c.case_id for c in select(CASES, 2)] == ["a", "b"]


def test_quota_pulls_in_the_best_case_for_an_organ():
    chosen = select(CASES, 2, {"pancreas": 1})
    assert [c.case_id for c in chosen] == ["a", "d"]  # d has the highest pancreas score


def test_never_the_same_case_twice_and_quota_over_budget_refused():
    chosen = select([*CASES, CASES[0]], 4, {"liver": 2})
    assert sorted(c.case_id for c in chosen) == ["a", "b", "c", "d"]
    with pytest.raises(InvalidInput, match="quotas"):
        select(CASES, 1, {"liver": 1, "pancreas": 1})
