"""Attention judged per case and organ, per region, and strategies by the minutes they need."""

from __future__ import annotations

import numpy as np

from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.volume import Volume
from atlasloop.loop.annotator import NativeBox
from atlasloop.loop.evaluation import Curve
from atlasloop.loop.judging import case_organ, efficiency, minutes_to_reach, oracle_plan, region_level

LIVER, SPLEEN, KIDNEY = ORGAN_IDS["liver"], ORGAN_IDS["spleen"], ORGAN_IDS["kidney_right"]
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])  # 12 mm^3 voxels: 0.1 mL is 9 voxels


def _cases() -> tuple[dict[str, Volume], dict[str, Volume]]:
    truth = np.zeros((40, 40, 20), np.uint8)
    truth[5:20, 5:20, 5:15] = LIVER
    truth[25:35, 25:35, 5:15] = SPLEEN
    truth[25:35, 5:15, 5:15] = KIDNEY
    ai = truth.copy()
    ai[5:12, 5:20, 5:15] = 0  # half the liver missed: Dice 0.69, matters
    ai[25:35, 25:35, 14] = 0  # one slice of the spleen missed: Dice 0.95, does not matter
    ai[36, 36, 18] = KIDNEY  # a one-voxel speck: below 0.1 mL, not an error anyone draws
    return {"c": Volume(ai, AFFINE)}, {"c": Volume(truth, AFFINE)}


def test_case_organ_counts_errors_that_matter_and_the_organs_flagged():
    ai, truth = _cases()
    liver = NativeBox("liver", (5, 5, 5), (12, 20, 15))
    spleen = NativeBox("spleen", (24, 24, 13), (36, 36, 15))
    found = case_organ(ai, truth, {"c": [liver, spleen]})
    assert (found.relevant, found.found, found.flagged, found.correct) == (1, 1, 2, 1)
    assert (found.sensitivity, found.precision) == (1.0, 0.5)
    missed = case_organ(ai, truth, {"c": [spleen]})
    assert (missed.sensitivity, missed.precision) == (0.0, 0.0)
    assert case_organ(ai, truth, {}).precision is None  # nothing flagged: undefined, not 0


def test_regions_are_judged_against_error_components_that_count():
    ai, truth = _cases()
    on_liver = NativeBox("liver", (6, 6, 6), (8, 8, 8))
    on_spleen = NativeBox("spleen", (25, 25, 14), (27, 27, 14))
    beside = NativeBox("liver", (30, 30, 0), (39, 39, 3))  # nothing wrong there
    on_speck = NativeBox("kidney_right", (36, 36, 18), (36, 36, 18))
    found = region_level(ai, truth, {"c": [on_liver, on_spleen, beside, on_speck]})
    # components that count: the liver's missed half and the spleen's missed slice (100 voxels)
    assert (found.relevant, found.found) == (2, 2)
    assert (found.flagged, found.correct) == (4, 2)


def test_minutes_to_reach_randoms_final_dice():
    def curve(strategy, seed, minutes, dice):
        return Curve(strategy, seed, minutes, dice)

    curves = [
        curve("random", 0, [0, 20, 40], [0.7, 0.75, 0.8]),
        curve("attention", 0, [0, 10, 30], [0.7, 0.8, 0.85]),
        curve("random", 1, [0, 20, 40], [0.7, 0.72, 0.78]),
        curve("attention", 1, [0, 15, 25], [0.7, 0.74, 0.77]),  # never gets there
    ]
    assert minutes_to_reach(curves[1], 0.8) == (10, True)
    assert minutes_to_reach(curves[3], 0.78) == (25, False)
    result = efficiency(curves, 40)
    assert [r["ratio_attention_vs_random"] for r in result["per_seed"]] == [0.25, 25 / 40]
    assert result["minutes_ratio_attention_vs_random"] == (0.25 + 25 / 40) / 2
    assert result["per_seed"][1]["reached"]["attention"] is False
    assert result["median_ratios"] == {"attention": (0.25 + 25 / 40) / 2, "random": 1.0}


def test_the_oracle_boxes_exactly_the_errors_that_matter():
    ai, truth = _cases()
    plan = oracle_plan(ai, truth)
    # only the liver's missed half: the spleen's slice (Dice 0.95) and the kidney's speck do not matter
    assert plan.regions["c"] == [NativeBox("liver", (5, 5, 5), (11, 19, 14))]
    assert plan.order == ["c"]
    found = case_organ(ai, truth, plan.regions)
    assert (found.sensitivity, found.precision) == (1.0, 1.0)
    fine = {"d": truth["c"]}
    assert oracle_plan(fine, fine).regions == {"d": []}
