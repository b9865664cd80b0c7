"""Case grants: genuine, unexpired and the caller's own, or worth nothing."""

from __future__ import annotations

import pytest

from atlasloop.common import case_grants
from atlasloop.common.auth import Principal, reset_current_principal, set_current_principal
from atlasloop.common.domain import Role
from atlasloop.common.errors import InvalidInput, NotReady, PermissionDenied

KEY = b"k" * 32


def test_a_grant_is_read_only_by_its_subject_for_its_case_until_it_expires():
    grant = case_grants.issue(KEY, "alice", "case-1", 600, now=1000)
    assert case_grants.verified_cases(KEY, "alice", [grant], now=1500) == {"case-1"}
    assert case_grants.verified_cases(KEY, "bob", [grant], now=1500) == frozenset()  # not bob's
    assert case_grants.verified_cases(KEY, "alice", [grant], now=1600) == frozenset()  # expired
    assert case_grants.verified_cases(b"other key", "alice", [grant], now=1500) == frozenset()
    assert case_grants.verified_cases(None, "alice", [grant], now=1500) == frozenset()  # no key: nothing
    version, body, signature = grant.split(".")
    other = case_grants.issue(KEY, "alice", "case-2", 600, now=1000).split(".")[1]
    for forged in (f"{version}.{other}.{signature}", f"cg0.{body}.{signature}", grant + "x", "x" * 600, "..."):
        assert case_grants.verified_cases(KEY, "alice", [forged], now=1500) == frozenset(), forged
    many = [case_grants.issue(KEY, "alice", f"c{i}", 600, now=1000) for i in range(40)]
    assert len(case_grants.verified_cases(KEY, "alice", many, now=1500)) == case_grants.MAX_GRANTS
    with pytest.raises(NotReady, match="grant key"):
        case_grants.issue(None, "alice", "case-1", 600)


@pytest.mark.parametrize(
    ("roles", "cases", "allowed"),
    [
        ({Role.ANNOTATOR}, set(), False),
        ({Role.ANNOTATOR}, {"case-2"}, False),
        ({Role.ANNOTATOR}, {"case-1"}, True),
        ({Role.REVIEWER}, set(), True),
        ({Role.ADMIN}, set(), True),
        ({Role.SERVICE}, set(), True),
    ],
)
def test_who_reads_a_case(roles, cases, allowed):
    token = set_current_principal(Principal("p", frozenset(roles), frozenset(cases)))
    try:
        if allowed:
            case_grants.check_case_read("case-1")
        else:
            with pytest.raises(PermissionDenied, match="GrantCase"):
                case_grants.check_case_read("case-1")
        with pytest.raises(InvalidInput, match="case id"):  # a malformed id is refused for everyone
            case_grants.check_case_read("../x")
    finally:
        reset_current_principal(token)
