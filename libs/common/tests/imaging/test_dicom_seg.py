"""A label map written as DICOM SEG references its series slice by slice and decodes back voxel for
voxel, on the series' own grid and on a reoriented (canonical) copy of it."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from atlasloop.imaging.dicom import read_series
from atlasloop.imaging.dicom_seg import ORGAN_CODES, SegProvenance, parse, read_seg, write_seg
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import ORGANS, from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti

WHEN = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def _oblique_series(tmp_path):
    angle = np.deg2rad(12)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.7, -0.7, 2.0])  # LPS-like: a flipped, rotated grid
    affine[:3, 3] = [150, 140, -80]
    rng = np.random.default_rng(3)
    ct = Volume(rng.integers(-1024, 2000, size=(20, 16, 7)).astype(np.int16), affine)
    write_series(ct, tmp_path / "s", tags={"PatientID": "MRN-7"})
    volume, identity = read_series(tmp_path / "s")
    labels = Volume(rng.integers(0, 10, size=volume.shape).astype(np.uint8), volume.affine)
    return volume, identity, labels


def test_real_ct_labels_round_trip_and_every_frame_references_its_slice(real_ct_dir, tmp_path):
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    seg = load_nifti(real_ct_dir / "example_seg.nii.gz")
    write_series(ct, tmp_path / "series")
    volume, identity = read_series(tmp_path / "series")
    labels = Volume(from_totalsegmentator(seg.array), volume.affine)
    assert set(np.unique(labels.array)) == set(range(10))  # every organ present on the real CT

    data = write_seg(labels, identity, SegProvenance("real-1", "v1", True, "set-7", WHEN))

    assert np.array_equal(read_seg(data, identity, volume).array, labels.array)
    # read independently of our decoder: frame by frame through highdicom, by source instance
    decoded = hd.seg.segread(io.BytesIO(data))
    for k, instance in enumerate(identity.instances):
        frame = decoded.get_pixels_by_source_instance(
            source_sop_instance_uids=[instance.sop_instance_uid], combine_segments=True, relabel=False
        )[0]
        assert np.array_equal(frame, labels.array[:, :, k].T)
    ds = parse(data)
    assert ds.Modality == "SEG" and ds.SeriesInstanceUID != identity.series_instance_uid
    assert ds.StudyInstanceUID == identity.study_instance_uid
    assert ds.FrameOfReferenceUID == identity.frame_of_reference_uid
    referenced = {r.ReferencedSOPInstanceUID for r in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {i.sop_instance_uid for i in identity.instances}
    segments = {s.SegmentNumber: s for s in ds.SegmentSequence}
    assert sorted(segments) == sorted(ORGANS)
    for number, organ in ORGANS.items():
        code = segments[number].SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == (ORGAN_CODES[organ].value, "SCT")
        assert segments[number].SegmentAlgorithmType == "AUTOMATIC"
        assert segments[number].SegmentAlgorithmName == "AtlasLoop ensemble"
    # the same label version gives the same bytes: UIDs and dates come from it
    assert write_seg(labels, identity, SegProvenance("real-1", "v1", True, "set-7", WHEN)) == data


def test_a_persons_label_is_manual_with_its_author_and_a_reoriented_grid_is_mapped(tmp_path):
    volume, identity, labels = _oblique_series(tmp_path)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(labels.array, labels.affine))
    on_canonical = Volume(np.asarray(canonical.dataobj), canonical.affine)
    assert not np.allclose(on_canonical.affine, labels.affine)  # a permuted, flipped copy

    data = write_seg(on_canonical, identity, SegProvenance("c", "v2", False, "ann", WHEN))

    assert np.array_equal(read_seg(data, identity, volume).array, labels.array)
    assert np.array_equal(read_seg(data, identity, on_canonical).array, on_canonical.array)
    ds = parse(data)
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"MANUAL"}
    assert str(ds.ContentCreatorName) == "ann^"
    assert ds.PatientID == "MRN-7"  # what the identity holds; storage keeps it only when allowed


def test_a_label_map_off_the_series_grid_is_refused(tmp_path):
    _, identity, labels = _oblique_series(tmp_path)
    shifted = labels.affine.copy()
    shifted[:3, 3] += 1.0
    with pytest.raises(ImageError, match="not the DICOM series' grid"):
        write_seg(Volume(labels.array, shifted), identity, SegProvenance("c", "v", True, "s", WHEN))
    with pytest.raises(ImageError, match="not the DICOM series' grid"):
        write_seg(Volume(labels.array[:, :, :-1], labels.affine), identity, SegProvenance("c", "v", True, "s", WHEN))


def test_a_sparse_label_map_carries_only_the_frames_an_organ_is_in_and_decodes_whole(tmp_path):
    """Frames where a segment is empty are left out (a real CT's SEG shrinks from one frame per
    organ per slice to the slices each organ is in), and still every slice is referenced and the
    label map decodes with its empty slices; an empty label map keeps every frame (a SEG needs one)."""
    volume, identity, _ = _oblique_series(tmp_path)
    sparse = np.zeros(volume.shape, np.uint8)
    sparse[2:9, 3:8, 1:3] = 5  # the liver on two slices
    sparse[10:12, 4:6, 4] = 1  # the spleen on one
    labels = Volume(sparse, volume.affine)

    data = write_seg(labels, identity, SegProvenance("c", "v3", True, "s", WHEN))

    ds = parse(data)
    assert int(ds.NumberOfFrames) == 3  # (liver, 2 slices) + (spleen, 1 slice), of 9 x 7 = 63
    referenced = {r.ReferencedSOPInstanceUID for r in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {i.sop_instance_uid for i in identity.instances}
    assert np.array_equal(read_seg(data, identity, labels).array, sparse)
    empty = Volume(np.zeros(volume.shape, np.uint8), volume.affine)
    nothing = write_seg(empty, identity, SegProvenance("c", "v4", True, "s", WHEN))
    assert not read_seg(nothing, identity, empty).array.any()
