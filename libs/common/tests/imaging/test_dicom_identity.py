"""A series' identity survives reading: UIDs, each slice's instance in slice order, acquisition tags;
patient identifiers only when the caller keeps them."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pydicom
import pytest

from atlasloop.imaging.dicom import read_series
from atlasloop.imaging.dicom_identity import MAX_TAG_CHARS, SeriesIdentity
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.volume import Volume

SCANNER = {
    "Manufacturer": "SIEMENS",
    "ManufacturerModelName": "SOMATOM Force",
    "KVP": "100",
    "ConvolutionKernel": ["Br40d", "3"],
    "ContrastBolusAgent": "Iomeprol",
    "BodyPartExamined": "ABDOMEN",
}
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "MRN-0042", "PatientBirthDate": "19610203", "StudyDate": "20260101"}


def _volume(slices: int = 6) -> Volume:
    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-40.0, 12.0, -300.0]
    return Volume(rng.integers(-1000, 1500, (16, 12, slices)).astype(np.int16), affine)


def test_identity_keeps_uids_and_instances_in_slice_order(tmp_path):
    volume = _volume()
    paths = write_series(volume, tmp_path / "s", tags={**SCANNER, **PATIENT})  # file names shuffled
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as archive:
        for path in paths:
            archive.write(path, path.name)
    written = [pydicom.dcmread(p) for p in paths]
    by_z = sorted(written, key=lambda ds: float(ds.ImagePositionPatient[2]))

    read, identity = read_series(tmp_path / "s.zip")

    assert np.array_equal(read.array, volume.array)
    first = written[0]
    assert (identity.study_instance_uid, identity.series_instance_uid, identity.frame_of_reference_uid) == (
        first.StudyInstanceUID,
        first.SeriesInstanceUID,
        first.FrameOfReferenceUID,
    )
    assert identity.sop_class_uid == first.SOPClassUID
    # slice k of the volume is the instance at the k-th position along the normal, not the k-th file
    assert [i.sop_instance_uid for i in identity.instances] == [ds.SOPInstanceUID for ds in by_z]
    for k, instance in enumerate(identity.instances):
        world = read.affine @ np.array([0, 0, k, 1.0])
        assert np.allclose(instance.position_lps, [-world[0], -world[1], world[2]], atol=1e-4)
    assert identity.acquisition == {
        "modality": "CT",
        "manufacturer": "SIEMENS",
        "model": "SOMATOM Force",
        "kvp": "100",
        "kernel": "Br40d\\3",
        "slice_thickness_mm": "2.500000",
        "contrast_agent": "Iomeprol",
        "body_part": "ABDOMEN",
    }
    assert identity.patient == {
        "patient_id": "MRN-0042",
        "patient_name": "Doe^Jane",
        "birth_date": "19610203",
        "study_date": "20260101",
    }


def test_patient_identifiers_leave_only_when_kept(tmp_path):
    write_series(_volume(3), tmp_path / "s", tags={**SCANNER, **PATIENT})
    _, identity = read_series(tmp_path / "s")

    shared = json.dumps(identity.as_json())
    assert "Doe^Jane" not in shared and "MRN-0042" not in shared and "19610203" not in shared
    assert json.loads(shared)["patient"] == {}
    kept = identity.as_json(keep_patient=True)
    assert kept["patient"]["patient_id"] == "MRN-0042"
    assert SeriesIdentity.from_json(json.loads(json.dumps(kept))) == identity
    assert SeriesIdentity.from_json(identity.as_json()).patient == {}


@pytest.mark.filterwarnings("ignore:The value length")
@pytest.mark.parametrize("tags", [{}, {"SeriesDescription": "x" * 5000}])
def test_absent_tags_are_left_out_and_long_ones_cut(tmp_path, tags):
    write_series(_volume(2), tmp_path / "s", tags=tags)
    _, identity = read_series(tmp_path / "s")
    assert set(identity.acquisition) <= {"modality", "slice_thickness_mm", "series_description"}
    assert len(identity.acquisition.get("series_description", "")) <= MAX_TAG_CHARS
    assert identity.patient == {}


def test_deidentified_identity_remaps_every_uid_consistently_and_keeps_no_identifier(tmp_path):
    write_series(_volume(4), tmp_path / "a", tags={**SCANNER, **PATIENT, "SeriesDescription": "Doe abdomen"})
    _, identity = read_series(tmp_path / "a")
    key = b"k" * 32

    anonymous = identity.deidentified(key)

    source_uids = {identity.study_instance_uid, identity.series_instance_uid, identity.frame_of_reference_uid}
    source_uids |= {i.sop_instance_uid for i in identity.instances}
    new_uids = {anonymous.study_instance_uid, anonymous.series_instance_uid, anonymous.frame_of_reference_uid}
    new_uids |= {i.sop_instance_uid for i in anonymous.instances}
    assert len(new_uids) == len(source_uids) and not new_uids & source_uids
    assert all(u.startswith("2.25.") and len(u) <= 64 and u[5:].isdigit() for u in new_uids)
    assert anonymous.deidentified(key) != anonymous  # a second pass remaps again: it is a function of the UID
    assert identity.deidentified(key) == anonymous  # the same key: the same UIDs, every time
    assert identity.deidentified(b"j" * 32).study_instance_uid != anonymous.study_instance_uid
    assert [i.position_lps for i in anonymous.instances] == [i.position_lps for i in identity.instances]
    assert anonymous.patient == {} and "series_description" not in anonymous.acquisition
    assert anonymous.acquisition["manufacturer"] == "SIEMENS"
    text = json.dumps(anonymous.as_json(keep_patient=True))
    assert "Doe" not in text and "MRN-0042" not in text and identity.study_instance_uid not in text

    # another series of the same study lands in the same (remapped) study
    write_series(_volume(2), tmp_path / "b", tags={"StudyInstanceUID": identity.study_instance_uid})
    _, other = read_series(tmp_path / "b")
    assert other.deidentified(key).study_instance_uid == anonymous.study_instance_uid
    with pytest.raises(ValueError, match="at least 16 bytes"):
        identity.deidentified(b"short")
