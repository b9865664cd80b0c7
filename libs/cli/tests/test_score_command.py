"""``atlasloop score`` on the published scripts' layout, and its refusals."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np

from atlasloop.cli.__main__ import main
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.method.reference_dense import organ_attention_dense
from atlasloop.method.simulate import simulate
from atlasloop.method.structures import TARGETS


def _write_layout(root, name, seed, with_entropy=True):
    _, labels = render(np.random.default_rng([seed, 0]), SITES["A"], 5.0)
    output = simulate(labels.array, labels.affine, np.random.default_rng(seed))
    case = root / name
    for member in output.members:
        for organ in TARGETS:
            save_nifti(
                Volume(output.soft[member][organ].full(output.shape), labels.affine),
                case / "backbones" / member / "soft_pred" / f"{organ}.nii.gz",
            )
            if with_entropy:
                save_nifti(
                    Volume(output.entropy[member][organ].full(output.shape), labels.affine),
                    case / "backbones" / member / "entropy" / f"{organ}.nii.gz",
                )
    for organ in TARGETS:
        save_nifti(
            Volume(output.pseudo[organ].full(output.shape).astype(np.uint8), labels.affine),
            case / "average" / "segmentations" / f"{organ}.nii.gz",
        )
    return output


def test_reference_layout_round_trip_matches_the_dense_specification(tmp_path):
    outputs = {name: _write_layout(tmp_path / "cases", name, seed) for seed, name in enumerate(["c0", "c1"])}
    assert main(["score", str(tmp_path / "cases"), "--mode", "reference", "--out", str(tmp_path / "out")]) == 0
    output = outputs["c0"]
    for organ in ("liver", "pancreas"):
        soft = [output.soft[m][organ].full(output.shape) for m in output.members]
        ent = [output.entropy[m][organ].full(output.shape) for m in output.members]
        segs = {o: output.pseudo[o].full(output.shape) for o in TARGETS}
        expected, _ = organ_attention_dense(organ, soft, ent, segs)
        written = load_nifti(tmp_path / "out" / "c0" / "average" / "attention" / f"{organ}.nii.gz").array
        assert np.array_equal(written, expected)
    rows = list(csv.reader((tmp_path / "out" / "priority.csv").open()))
    assert sorted(r[0] for r in rows) == ["c0", "c1"] and all(set(r[1:]) <= set(TARGETS) for r in rows)
    assert (tmp_path / "out" / "c0" / "average" / "attention" / "regions.json").exists()
    assert main(["score", str(tmp_path / "cases"), "--mode", "improved", "--out", str(tmp_path / "imp")]) == 0


def test_missing_organ_file_and_out_of_range_values_are_refused(tmp_path, capsys):
    _write_layout(tmp_path / "cases", "c0", 3, with_entropy=False)
    soft = tmp_path / "cases" / "c0" / "backbones" / "member1" / "soft_pred"
    (soft / "spleen.nii.gz").unlink()
    assert main(["score", str(tmp_path / "cases")]) == 2
    assert "member1" in capsys.readouterr().err
    liver = load_nifti(soft / "liver.nii.gz")
    save_nifti(Volume(np.full(liver.shape, 300, np.int16), liver.affine), soft / "spleen.nii.gz")
    assert main(["score", str(tmp_path / "cases")]) == 2
    assert "0..255" in capsys.readouterr().err
    save_nifti(Volume(np.zeros((4, 4, 4), np.uint8), np.eye(4)), soft / "spleen.nii.gz")
    assert main(["score", str(tmp_path / "cases")]) == 2
    assert "differs from the case's" in capsys.readouterr().err


def test_one_member_scores_without_inconsistency(tmp_path):
    _write_layout(tmp_path / "cases", "c0", 5)
    for extra in ("member1", "member2"):
        shutil.rmtree(tmp_path / "cases" / "c0" / "backbones" / extra)
    assert main(["score", str(tmp_path / "cases")]) == 0
    scores = json.loads((tmp_path / "cases" / "c0" / "average" / "attention" / "scores.json").read_text())
    assert all(
        r["dominant_signal"] != "inconsistency"
        for r in json.loads((tmp_path / "cases" / "c0" / "average" / "attention" / "regions.json").read_text())
    )
    assert scores["priority"] >= 0
