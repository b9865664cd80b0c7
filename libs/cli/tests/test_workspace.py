"""The pulled folder: a Slicer scene that loads as meant, colour tables Slicer parses, a manifest
that revise reads back, and a README that says what each file is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from atlasloop.cli import workspace
from atlasloop.imaging.labels import from_totalsegmentator
from atlasloop.imaging.viewer import (
    HEAT_TABLE,
    LABEL_TABLE,
    check_scene,
    heat_color_table,
    label_color_table,
    parse_color_table,
)
from atlasloop.imaging.volume import load_nifti, save_nifti


@pytest.fixture
def folder(tmp_path, real_ct_dir) -> Path:
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    labels = ct.with_array(from_totalsegmentator(load_nifti(real_ct_dir / "example_seg.nii.gz").array))
    save_nifti(ct, tmp_path / workspace.CT)
    save_nifti(labels, tmp_path / workspace.LABELS)
    save_nifti(labels, tmp_path / workspace.AI_LABELS)
    for organ in ("liver", "pancreas"):
        save_nifti(ct.with_array((labels.array > 0).astype(np.uint8) * 200), tmp_path / f"attention_{organ}.nii.gz")
    (tmp_path / LABEL_TABLE).write_text(label_color_table())
    (tmp_path / HEAT_TABLE).write_text(heat_color_table(np.linspace(0, 255, 256)[:, None].repeat(3, axis=1)))
    return tmp_path


def test_the_scene_loads_every_file_with_its_colours(folder):
    scene = workspace.write_scene(
        folder, [("pancreas", "attention_pancreas.nii.gz"), ("liver", "attention_liver.nii.gz")]
    )
    assert check_scene(scene) == []
    text = scene.read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<MRML version="Slicer')
    # the first (most salient) heatmap is the slice views' foreground, the labels their label layer
    assert (
        'references="backgroundVolume:vtkMRMLScalarVolumeNode1;labelVolume:vtkMRMLLabelMapVolumeNode2;'
        'foregroundVolume:vtkMRMLScalarVolumeNode4;"' in text
    )
    assert 'name="attention pancreas"' in text and 'fileName="attention_liver.nii.gz"' in text


def test_the_check_finds_what_slicer_would_not_load(folder):
    scene = workspace.write_scene(folder, [("liver", "attention_liver.nii.gz")])
    (folder / "attention_liver.nii.gz").unlink()
    assert any("'attention_liver.nii.gz' is not beside the scene" in p for p in check_scene(scene))
    broken = scene.read_text().replace("display:vtkMRMLLabelMapVolumeDisplayNode2", "display:nowhere")
    scene.write_text(broken)
    assert any("points at 'nowhere'" in p for p in check_scene(scene))
    scene.write_text("<MRML version='Slicer5'><Volume id='a'")
    assert check_scene(scene)[0].startswith("not well-formed XML")


def test_a_label_without_a_colour_is_found(folder):
    scene = workspace.write_scene(folder, [])
    labels = load_nifti(folder / workspace.LABELS)
    save_nifti(
        labels.with_array(np.where(labels.array == 5, 12, labels.array).astype(np.uint8)), folder / workspace.LABELS
    )
    assert check_scene(scene) == ["vtkMRMLLabelMapVolumeNode2: label ids [12] have no colour in AtlasLoop.ctbl"]


def test_colour_tables_parse_as_slicer_reads_them():
    labels = parse_color_table(label_color_table())
    assert labels[0] == ("background", (0, 0, 0, 0)) and labels[5] == ("liver", (221, 130, 101, 255))
    heat = parse_color_table(heat_color_table(np.zeros((256, 3))))
    assert len(heat) == 256 and heat[0][1][3] == 0 and heat[255][1][3] == 255
    with pytest.raises(ValueError, match="expected 'index name R G B A'"):
        parse_color_table("1 liver 255 0 0\n")


def test_the_manifest_round_trips_and_measures_the_minutes(tmp_path):
    pulled_at = datetime.now(UTC) - timedelta(minutes=12)
    pulled = workspace.Pulled("case-1", "lease-1", "v2", "v1", ("liver", "spleen"), pulled_at.isoformat())
    workspace.write_manifest(tmp_path, pulled)
    again = workspace.read_manifest(tmp_path)
    assert again == pulled
    assert 11.9 < again.minutes_since_pull() < 12.2
    assert workspace.read_manifest(tmp_path / "elsewhere") is None


def test_the_readme_says_what_each_file_is_and_how_to_send_it_back():
    pulled = workspace.Pulled("case-1", "lease-1", "v2", "v1", ("liver",), "2026-12-05T00:00:00+00:00")
    text = workspace.readme(pulled, [("liver", "attention_liver.nii.gz")])
    for name in (workspace.LABELS, workspace.AI_LABELS, workspace.CT, workspace.REGIONS, workspace.SCENE):
        assert name in text
    assert "atlasloop revise lease-1 ." in text
