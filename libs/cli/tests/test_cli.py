"""The atlasloop command on real and synthetic data, including its refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from atlasloop.cli.__main__ import main
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti


def test_inspect_real_labels_prints_organs_and_volumes(real_ct_dir, capsys):
    assert main(["inspect", str(real_ct_dir / "example_seg.nii.gz"), "--class-map", "totalsegmentator"]) == 0
    out = capsys.readouterr().out
    assert "liver" in out and "38,634" in out and "1043.1" in out  # 38,634 voxels of 27 mm^3
    assert main(["inspect", str(real_ct_dir / "example_seg.nii.gz"), "--class-map", "totalsegmentator", "--json"]) == 0
    organs = json.loads(capsys.readouterr().out)["organs"]
    assert len(organs) == 9 and organs["pancreas"] == {"voxels": 644, "ml": 17.39}


def test_inspect_ct_prints_geometry_and_hu(real_ct_dir, capsys):
    assert main(["inspect", str(real_ct_dir / "example_ct_sm.nii.gz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [122, 101, 30] and info["orientation"] == "RAS"
    assert (info["hu_min"], info["hu_max"]) == (-1100.0, 1207.0)


def test_convert_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00broken")
    out = tmp_path / "out" / "ct.nii.gz"
    assert main(["convert", str(bad), str(out)]) == 2
    assert "broken.nii.gz" in capsys.readouterr().err
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_convert_nifti_copies_voxels(real_ct_dir, tmp_path):
    shutil.copy(real_ct_dir / "example_ct_sm.nii.gz", tmp_path / "in.nii.gz")
    assert main(["convert", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz")]) == 0
    assert np.array_equal(load_nifti(tmp_path / "out.nii.gz").array, load_nifti(tmp_path / "in.nii.gz").array)


def test_metrics_json(tmp_path, capsys):
    truth = np.zeros((20, 20, 10), np.uint8)
    truth[5:15, 5:15, 2:8] = 8
    save_nifti(Volume(truth, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "gt.nii.gz")
    save_nifti(Volume(truth, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "pred.nii.gz")
    assert main(["metrics", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"), "--json"]) == 0
    rows = {r["organ"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["spleen"]["dice"] == 1.0 and rows["spleen"]["truth_ml"] == pytest.approx(600 * 12 / 1000)
    assert rows["liver"]["dice"] == 1.0 and rows["liver"]["hd95_mm"] == 0.0  # both empty


def test_synth_writes_layout_and_preview(tmp_path):
    assert (
        main(
            [
                "synth",
                "--cases",
                "2",
                "--out",
                str(tmp_path / "c"),
                "--seed",
                "3",
                "--spacing",
                "4",
                "--sites",
                "A,C",
                "--preview",
                str(tmp_path / "p.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "c" / "case_00001" / "segmentations" / "pancreas.nii.gz").exists()
    assert (tmp_path / "p.png").stat().st_size > 1000
