"""The synthetic cohort: deterministic, anatomically plausible, and shifted between sites."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from atlasloop.imaging.labels import ORGAN_IDS, census
from atlasloop.imaging.layout import read_case
from atlasloop.imaging.metrics import dice
from atlasloop.imaging.synth.cohort import generate_cohort
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES

PLAUSIBLE_ML = {
    "liver": (700, 2600),
    "spleen": (60, 500),
    "kidney_left": (50, 320),
    "kidney_right": (50, 320),
    "stomach": (80, 600),
    "pancreas": (20, 160),
    "aorta": (30, 200),
    "postcava": (30, 220),
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, cases=12, seed=5, spacing_mm=3.0)
    return out, json.loads((out / "cohort.json").read_text())


def test_same_seed_same_case_other_seed_other_case():
    a_ct, a_lab = render(np.random.default_rng([9, 0]), SITES["A"], 4.0)
    b_ct, b_lab = render(np.random.default_rng([9, 0]), SITES["A"], 4.0)
    c_ct, _ = render(np.random.default_rng([9, 1]), SITES["A"], 4.0)
    assert np.array_equal(a_ct.array, b_ct.array) and np.array_equal(a_lab.array, b_lab.array)
    assert not np.array_equal(a_ct.array, c_ct.array[: a_ct.shape[0], : a_ct.shape[1], : a_ct.shape[2]])


def test_cases_are_anatomically_plausible(cohort):
    out, manifest = cohort
    for entry in manifest["cases"]:
        case = read_case(out / entry["case"])
        volumes = {name: ml for name, (_, ml) in census(case.labels.array, case.labels.voxel_volume_ml).items()}
        assert len(volumes) >= 7, (entry["case"], volumes)
        for organ, (low, high) in PLAUSIBLE_ML.items():
            if organ in volumes:
                assert low <= volumes[organ] <= high, (entry["case"], organ, volumes[organ])
        # RAS world x grows to the patient's right: the liver lies right of the spleen, whatever
        # orientation the site stores.
        world = {
            o: case.labels.world(np.argwhere(case.labels.array == ORGAN_IDS[o]).mean(axis=0))
            for o in ("liver", "spleen")
        }
        assert world["liver"][0] > world["spleen"][0]
        assert case.ct.array.min() >= -1024 and case.ct.array.max() <= 3071


def test_sites_differ_in_how_they_store_and_look(cohort):
    out, manifest = cohort
    by_site = {}
    for entry in manifest["cases"]:
        by_site.setdefault(entry["site"], read_case(out / entry["case"]))
    assert by_site["A"].ct.orientation == "RAS" and by_site["B"].ct.orientation == "LPS"
    assert by_site["D"].ct.spacing[2] == 5.0
    liver_hu = {s: float(np.median(c.ct.array[c.labels.array == ORGAN_IDS["liver"]])) for s, c in by_site.items()}
    assert liver_hu["A"] - liver_hu["C"] > 40  # portal vs non-contrast enhancement


def test_a_model_free_baseline_fails_across_sites(cohort):
    """A liver HU-threshold rule tuned for portal-venous scans: the shift between sites is real."""
    out, manifest = cohort
    scores: dict[str, list[float]] = {}
    for entry in manifest["cases"]:
        case = read_case(out / entry["case"])
        hu = ndimage.median_filter(case.ct.array, 3)
        components, count = ndimage.label((hu > 85) & (hu < 140))
        pred = np.zeros(hu.shape, bool)
        if count:
            pred = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
        scores.setdefault(entry["site"], []).append(dice(pred, case.labels.array == ORGAN_IDS["liver"]))
    median = {site: float(np.median(v)) for site, v in scores.items()}
    assert median["A"] > 0.75 and median["D"] > 0.6
    assert median["B"] < 0.2 and median["C"] < 0.2


def test_unknown_site_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown sites"):
        generate_cohort(tmp_path, 1, 0, sites=["Z"])


def test_scale_shrinks_the_body_but_keeps_spacing_and_anatomy():
    full_ct, full = render(np.random.default_rng([3, 0]), SITES["A"], 3.0)
    half_ct, half = render(np.random.default_rng([3, 0]), SITES["A"], 3.0, scale=0.5)
    assert half_ct.spacing == full_ct.spacing
    assert 0.1 < half.array.size / full.array.size < 0.16  # about 1/8
    voxel_ml = float(np.prod(full_ct.spacing)) / 1000
    for organ in ("liver", "spleen", "kidney_left"):
        ratio = (half.array == ORGAN_IDS[organ]).sum() / (full.array == ORGAN_IDS[organ]).sum()
        assert 0.09 < ratio < 0.17, (organ, ratio)  # volumes scale by about 0.5^3
        assert (half.array == ORGAN_IDS[organ]).sum() * voxel_ml > 5
    with pytest.raises(ValueError, match="scale"):
        render(np.random.default_rng(0), SITES["A"], 3.0, scale=0.1)
