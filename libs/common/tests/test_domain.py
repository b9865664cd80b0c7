"""Domain enums meet their proto enums in one place: every member round-trips, UNSPECIFIED and
unknown numbers are refused, and an enum that drifts from its proto fails at definition."""

from __future__ import annotations

import pytest

from atlasloop.common import domain
from atlasloop.common.errors import InvalidInput
from atlasloop.common.v1 import common_pb2

ENUMS = [
    cls
    for cls in vars(domain).values()
    if isinstance(cls, type) and issubclass(cls, domain.ProtoEnum) and cls is not domain.ProtoEnum
]


@pytest.mark.parametrize("cls", ENUMS, ids=lambda c: c.__name__)
def test_every_member_round_trips_through_its_proto_value(cls):
    assert len(cls) > 0
    for member in cls:
        assert cls.from_proto(member.to_proto()) is member
        assert cls.parse(member.value.upper()) is member
        assert cls.has(member.value)
    for other in ("", "UNSPECIFIED", ["a", "list"], {"an": "object"}, 1, None):
        assert not cls.has(other)


def test_case_state_names_match_the_wire_values():
    assert domain.CaseState.SCORED.to_proto() == common_pb2.CASE_STATE_SCORED
    assert domain.ErrorTag.from_proto(common_pb2.ERROR_TAG_LATERALITY_SWAP) == "laterality_swap"


def test_unspecified_and_unknown_numbers_are_refused_with_the_choices():
    with pytest.raises(InvalidInput, match="case state is unspecified; give one of: ingested"):
        domain.CaseState.from_proto(0)
    with pytest.raises(InvalidInput, match="99 is not a valid error tag"):
        domain.ErrorTag.from_proto(99)
    with pytest.raises(InvalidInput, match="'sideways' is not a valid plane"):
        domain.Plane.parse("sideways")
    assert domain.Plane.from_proto(0, default=domain.Plane.AXIAL) is domain.Plane.AXIAL


def test_an_enum_that_misses_a_proto_value_fails_at_definition():
    with pytest.raises(TypeError, match="differs from its proto enum"):

        @domain._bound(common_pb2.LabelSource, "LABEL_SOURCE_")
        class Partial(domain.ProtoEnum):
            AI = "ai"
            HUMAN = "human"


def test_run_states_know_which_are_terminal():
    assert {s for s in domain.RunState if s.terminal} == {"published", "rejected", "failed"}
