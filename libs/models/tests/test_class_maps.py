"""An imported model's classes onto the project's organs: by name (aliases, case and spaces aside),
or as the operator maps them; background and unmatched classes are dropped; a map that names an
unknown class or organ, or maps nothing, is refused with its reason."""

from __future__ import annotations

import pytest

from atlasloop.common.errors import InvalidInput
from atlasloop.models.class_maps import check_probability_memory, map_onto_organs

TOTALSEG_LIKE = {
    0: "background",
    1: "spleen",
    2: "kidney_right",
    3: "Left Kidney",
    4: "gallbladder",
    5: "IVC",
    6: "lung",
}


def test_classes_named_like_an_organ_map_onto_it():
    assert map_onto_organs(TOTALSEG_LIKE, None, "x") == {
        1: "spleen",
        2: "kidney_right",
        3: "kidney_left",
        4: "gall_bladder",
        5: "postcava",
    }


def test_an_explicit_map_wins_and_is_checked():
    assert map_onto_organs(TOTALSEG_LIKE, {"lung": "liver"}, "x") == {6: "liver"}
    with pytest.raises(InvalidInput, match="'heart' is not in x"):
        map_onto_organs(TOTALSEG_LIKE, {"heart": "liver"}, "x")
    with pytest.raises(InvalidInput, match="'brain' is not an organ of the project"):
        map_onto_organs(TOTALSEG_LIKE, {"lung": "brain"}, "x")
    with pytest.raises(InvalidInput, match="none of the classes of the bundle"):
        map_onto_organs({0: "background", 1: "lung"}, None, "the bundle")


def test_a_case_whose_class_probabilities_would_not_fit_is_refused_with_the_reason():
    check_probability_memory(26, (512, 512, 300), "nnU-Net member")  # 7.6 GiB: served
    with pytest.raises(InvalidInput, match=r"118 classes on a 512 x 512 x 300 CT need 34\.6 GiB"):
        check_probability_memory(118, (512, 512, 300), "nnU-Net member")
