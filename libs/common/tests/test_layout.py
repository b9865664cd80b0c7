"""Object keys come from one module; the parsers invert the builders; no key is built from an
unsafe id."""

from __future__ import annotations

import pytest

from atlasloop.common import layout
from atlasloop.common.errors import InvalidInput


def test_case_keys_live_under_the_case_prefix_and_give_the_case_back():
    for key in (
        layout.ct_key("c1"),
        layout.meta_key("c1"),
        layout.label_key("c1", "v"),
        layout.ensemble_key("c1", "s"),
        layout.attention_key("c1", "s", "reference"),
        layout.scored_marker_key("c1", "s"),
        layout.export_prefix("c1", ""),
    ):
        assert key.startswith(layout.case_prefix("c1"))
        assert layout.case_id_of(key) == "c1"


def test_sub_names_list_one_level_below_a_prefix():
    prefix = layout.predictions_prefix("c1")
    listed = [layout.prediction_prefix("c1", "set-b"), layout.prediction_prefix("c1", "set-a")]
    assert layout.sub_names(prefix, listed) == ["set-a", "set-b"]


def test_training_keys_give_the_run_back():
    assert layout.run_id_of(layout.run_key("run-1")) == "run-1"
    assert layout.run_id_of(layout.candidate_key("run-1", "unet")) == "run-1"
    assert layout.weights_key("unet", "v1").startswith(layout.MODELS)


@pytest.mark.parametrize(
    "build",
    [
        lambda: layout.ct_key("../../etc"),
        lambda: layout.label_key("case-1", "../ct"),
        lambda: layout.ensemble_key("case-1", "a/b"),
        lambda: layout.attention_key("case-1", "ms-1", "reference/../../x"),
        lambda: layout.score_index_key("ms-1", "reference", ".hidden"),
        lambda: layout.export_prefix("case-1", "v" * 200),
        lambda: layout.staging_key(""),
        lambda: layout.weights_key("unet", ".."),
        lambda: layout.run_key("run-1/../../ledger"),
        lambda: layout.model_set_key("x\\y"),
    ],
)
def test_no_key_is_built_from_an_unsafe_segment(build):
    with pytest.raises(InvalidInput, match="is not valid"):
        build()


def test_safe_segments_make_the_documented_keys():
    assert layout.label_key("case_00001", "20261127T073000123456-1a2b3c4d") == (
        "cases/case_00001/labels/20261127T073000123456-1a2b3c4d.nii.gz"
    )
    assert (
        layout.attention_key("c.1", "set-run-1", "improved") == "cases/c.1/attention/set-run-1/improved/attention.npz"
    )
