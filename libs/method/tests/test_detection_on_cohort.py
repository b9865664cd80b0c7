"""On synthetic cases with simulated members that make known errors, both modes report error
detection; the numbers are computed, not asserted to match the paper, but must be sane."""

from __future__ import annotations

import numpy as np

from atlasloop.imaging.compact import slices
from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.method.case_scoring import score_case
from atlasloop.method.detection import NOTHING, detect
from atlasloop.method.simulate import ErrorModel, simulate


def test_both_modes_find_a_share_of_the_errors():
    totals = {"reference": NOTHING, "improved": NOTHING}
    for i in range(4):
        _, labels = render(np.random.default_rng([11, i]), SITES["B"], 4.0)
        output = simulate(labels.array, labels.affine, np.random.default_rng(i), ErrorModel(shared_error_rate=0.5))
        for mode in totals:
            for organ in score_case(f"c{i}", output, mode).organs:
                region = np.zeros(output.shape, bool)
                if organ.attention.box:
                    region[slices(organ.attention.box)] = organ.attention.region
                truth = labels.array == ORGAN_IDS[organ.organ]
                totals[mode] += detect(
                    region, output.pseudo[organ.organ].full(output.shape).astype(bool), truth, min_error_voxels=10
                )
    for mode, d in totals.items():
        assert d.error_regions > 5, mode
        assert 0 < d.region_sensitivity <= 1 and 0 < d.region_precision <= 1, (mode, d)
    assert totals["improved"].attention_voxels < totals["reference"].attention_voxels
