"""Object keys come from one module; the parsers invert the builders."""

from __future__ import annotations

from atlasloop.common import layout


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
