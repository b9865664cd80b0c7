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


def test_every_organ_field_of_the_api_carries_a_schema_id():
    """No fixed enum: organ fields are uint32 ids in the project's schema, whatever its size."""
    from google.protobuf.descriptor import FieldDescriptor

    from atlasloop.events.v1 import events_pb2
    from atlasloop.rendering.v1 import rendering_pb2
    from atlasloop.scoring.v1 import scoring_pb2
    from atlasloop.tracking.v1 import tracking_pb2
    from atlasloop.training.v1 import training_pb2

    found = []

    def walk(message):
        for f in message.fields:
            if f.name in ("organ", "organs", "heatmap_organ") and f.type != FieldDescriptor.TYPE_MESSAGE:
                found.append(f"{message.full_name}.{f.name}")
                assert f.type == FieldDescriptor.TYPE_UINT32, f"{message.full_name}.{f.name}"
        for nested in message.nested_types:
            walk(nested)

    for module in (common_pb2, events_pb2, rendering_pb2, scoring_pb2, tracking_pb2, training_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            walk(message)
    assert len(found) >= 24 and "atlasloop.common.v1.OrganErrorTag.organ" in found
    assert "Organ" not in common_pb2.DESCRIPTOR.enum_types_by_name


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
