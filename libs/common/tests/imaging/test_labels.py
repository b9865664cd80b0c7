"""The schema and the TotalSegmentator importer, on the real example."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.common.v1 import common_pb2
from atlasloop.imaging import labels
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.volume import load_nifti

# From tests/data/real-ct/README.md.
README_COUNTS = {
    "spleen": 9452,
    "kidney_right": 3947,
    "kidney_left": 3676,
    "gall_bladder": 1333,
    "liver": 38634,
    "stomach": 4675,
    "pancreas": 644,
    "aorta": 997,
    "postcava": 1368,
}


def test_schema_matches_the_proto_enum():
    for label, name in labels.ORGANS.items():
        assert common_pb2.Organ.Value(f"ORGAN_{name.upper()}") == label


def test_totalsegmentator_import_gives_the_readme_counts(real_ct_dir):
    seg = load_nifti(real_ct_dir / "example_seg.nii.gz")
    mapped = labels.from_totalsegmentator(seg.array)
    counts = {name: count for name, (count, _) in labels.census(mapped, seg.voxel_volume_ml).items()}
    assert counts == README_COUNTS
    assert labels.census(mapped, seg.voxel_volume_ml)["liver"][1] == pytest.approx(38634 * 27 / 1000)


def test_ids_outside_the_schema_are_refused():
    with pytest.raises(ImageError, match=r"\[10, 52\]"):
        labels.validate_label_map(np.array([0, 5, 10, 52]))
    with pytest.raises(ImageError, match="non-integer"):
        labels.validate_label_map(np.array([0.0, 1.5]))
    assert labels.validate_label_map(np.array([0, 9], dtype=np.int32)).dtype == np.uint8


def test_aliases_and_refusals():
    assert labels.canonical_name("gallbladder.nii.gz") == "gall_bladder"
    assert labels.canonical_name("inferior_vena_cava") == "postcava"
    with pytest.raises(ImageError, match="not one of the organs"):
        labels.canonical_name("appendix")
