"""What a DICOM import keeps and gives back, through the storage service on the real S3 and broker:
the series' identity (patient identifiers only when allowed), de-identification, listing by
acquisition, and label versions as DICOM SEG (decoded voxel for voxel; from the command line too)."""

from __future__ import annotations

import shutil
import zipfile

import grpc
import numpy as np
import pydicom
import pytest
from google.protobuf.json_format import MessageToDict
from pydicom.data import get_testdata_file

from atlasloop.cli.__main__ import main as cli_main
from atlasloop.common import layout
from atlasloop.common.transfer import download_volume, upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.dicom import read_series
from atlasloop.imaging.dicom_identity import SeriesIdentity
from atlasloop.imaging.dicom_seg import read_seg
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.labels import from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.storage.v1 import storage_pb2

from .storage_service import ADMIN, SERVICE, import_file, running_storage

pytestmark = pytest.mark.integration


def _seg(stub, case_id, label_version, path, metadata):
    """Download a label version as DICOM SEG into ``path``."""
    return download_volume(
        stub, case_id, path, metadata, kind=common_pb2.VOLUME_KIND_DICOM_SEG, label_version=label_version
    )


SCANNER = {
    "Manufacturer": "GE MEDICAL SYSTEMS",
    "KVP": "120",
    "ConvolutionKernel": "STANDARD",
    "BodyPartExamined": "ABDOMEN",
}
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "MRN-0042", "PatientBirthDate": "19610203"}


@pytest.mark.parametrize("keep_patient", [False, True])
def test_a_dicom_import_keeps_the_series_identity_and_patient_identifiers_only_when_allowed(
    stack, unique, real_ct_dir, tmp_path, caplog, keep_patient
):
    """The real CT as a DICOM series (zip): the case keeps the UIDs and every slice's instance,
    placed on the stored CT's grid, and the acquisition tags. Patient identifiers are dropped,
    unless the deployment keeps them, and then only an admin sees them; never in an event or a log."""
    caplog.set_level("DEBUG")
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    paths = write_series(ct, tmp_path / "series", tags={**SCANNER, **PATIENT})
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for path in paths:
            archive.write(path, f"series/{path.name}")
    written = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]

    with running_storage(stack, unique, keep_patient_identifiers=keep_patient) as (stub, store, collector, _target):
        reply = import_file(stub, tmp_path / "series.zip", format=storage_pb2.CASE_FORMAT_DICOM_ZIP, case_id="dicom-01")
        dicom = reply.info.dicom
        assert (dicom.study_instance_uid, dicom.series_instance_uid, dicom.frame_of_reference_uid) == (
            written[0].StudyInstanceUID,
            written[0].SeriesInstanceUID,
            written[0].FrameOfReferenceUID,
        )
        assert sorted(i.sop_instance_uid for i in dicom.instances) == sorted(ds.SOPInstanceUID for ds in written)
        assert dict(dicom.acquisition) == {
            "modality": "CT",
            "manufacturer": "GE MEDICAL SYSTEMS",
            "kvp": "120",
            "kernel": "STANDARD",
            "body_part": "ABDOMEN",
            "slice_thickness_mm": written[0].SliceThickness,
        }
        # every instance is a slice of the stored (canonical) CT: its corner lands on a voxel
        # corner of that grid, each slice once
        stored_affine = np.asarray(reply.info.geometry.affine).reshape(4, 4)
        shape = list(reply.info.geometry.shape)
        at = [
            np.linalg.inv(stored_affine) @ np.array([-i.position_lps[0], -i.position_lps[1], i.position_lps[2], 1.0])
            for i in dicom.instances
        ]
        assert all(np.allclose(v[:3], np.round(v[:3]), atol=1e-3) for v in at)
        slice_axis = int(np.argmax([len({round(v[a]) for v in at}) for a in range(3)]))
        assert sorted(round(v[slice_axis]) for v in at) == list(range(shape[slice_axis]))

        admin = stub.GetCase(storage_pb2.GetCaseRequest(case_id="dicom-01"), metadata=ADMIN).info.dicom
        service = stub.GetCase(storage_pb2.GetCaseRequest(case_id="dicom-01"), metadata=SERVICE).info.dicom
        assert dict(admin.patient) == (
            {"patient_id": "MRN-0042", "patient_name": "Doe^Jane", "birth_date": "19610203"} if keep_patient else {}
        )
        assert dict(service.patient) == {} and service.series_instance_uid == dicom.series_instance_uid
        listed = stub.ListCases(storage_pb2.ListCasesRequest(), metadata=SERVICE).cases
        assert [dict(c.dicom.patient) for c in listed] == [{}]

        (event,) = collector.wait_for(1)
        meta = store.get_bytes(layout.meta_key("dicom-01"))
    assert event.case_id == "dicom-01" and b"Doe^Jane" not in event.SerializeToString()
    assert (b"Doe^Jane" in meta) == keep_patient and (b"MRN-0042" in meta) == keep_patient
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "dicom-01" in logged and "Doe^Jane" not in logged and "MRN-0042" not in logged


def test_a_deidentified_import_remaps_the_uids_consistently_and_keeps_no_identifier(
    stack, unique, real_ct_dir, tmp_path, caplog
):
    """With de-identification on, two series of one study import with new UIDs (the same study
    UID for both, none of the source's), no patient identifier and no series description, and
    none of the source's identifiers or UIDs reaches storage, the events or the logs."""
    caplog.set_level("DEBUG")
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    first = write_series(ct, tmp_path / "a", tags={**SCANNER, **PATIENT, "SeriesDescription": "Doe^Jane abdomen"})
    study = pydicom.dcmread(first[0], stop_before_pixels=True).StudyInstanceUID
    second = write_series(
        ct.with_array(ct.array[:, :, :20]), tmp_path / "b", tags={**PATIENT, "StudyInstanceUID": study}
    )
    source_uids = {
        uid
        for path in first + second
        for ds in [pydicom.dcmread(path, stop_before_pixels=True)]
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID)
    }
    for name, paths in (("a", first), ("b", second)):
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as archive:
            for path in paths:
                archive.write(path, path.name)

    with running_storage(stack, unique, deidentify=True, deidentify_key="k" * 32) as (stub, store, collector, _target):
        a = import_file(stub, tmp_path / "a.zip", format=storage_pb2.CASE_FORMAT_DICOM_ZIP, case_id="anon-a").info.dicom
        b = import_file(stub, tmp_path / "b.zip", format=storage_pb2.CASE_FORMAT_DICOM_ZIP, case_id="anon-b").info.dicom
        metas = store.get_bytes(layout.meta_key("anon-a")) + store.get_bytes(layout.meta_key("anon-b"))
        events = b"".join(e.SerializeToString() for e in collector.wait_for(2))
        stored = b"".join(
            store.get_bytes(key) for key in store.list_keys("cases/") if not key.endswith((".nii.gz", ".display"))
        )

    assert a.study_instance_uid == b.study_instance_uid != study
    kept = {a.series_instance_uid, b.series_instance_uid, a.frame_of_reference_uid, a.study_instance_uid}
    kept |= {i.sop_instance_uid for i in list(a.instances) + list(b.instances)}
    assert not kept & source_uids and len(a.instances) == 30 and len(b.instances) == 20
    assert dict(a.patient) == {} and "series_description" not in a.acquisition and a.acquisition["kvp"] == "120"
    assert b"Doe" not in metas and b"MRN-0042" not in metas
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "anon-a" in logged  # the imports were logged, without what identifies the patient
    for where in (metas, stored, events, logged.encode()):
        assert b"Doe" not in where and b"MRN-0042" not in where and b"19610203" not in where
        assert not any(uid.encode() in where for uid in source_uids)


def test_cases_are_listed_by_their_acquisition_and_study(storage, real_ct_dir, tmp_path):
    """ListCases keeps the DICOM cases whose acquisition matches (without case) or whose study or
    series is asked for; a NIfTI case has no acquisition to match; an unknown field is refused."""
    stub, _store, _collector = storage
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    scanners = {"ge": "GE MEDICAL SYSTEMS", "siemens": "SIEMENS", "ge-2": "GE MEDICAL SYSTEMS"}
    replies = {}
    for k, (case_id, maker) in enumerate(scanners.items()):
        paths = write_series(ct.with_array(ct.array[:, :, k:]), tmp_path / case_id, tags={"Manufacturer": maker})
        with zipfile.ZipFile(tmp_path / f"{case_id}.zip", "w") as archive:
            for path in paths:
                archive.write(path, path.name)
        replies[case_id] = import_file(
            stub, tmp_path / f"{case_id}.zip", format=storage_pb2.CASE_FORMAT_DICOM_ZIP, case_id=case_id
        ).info
    import_file(stub, real_ct_dir / "example_ct_sm.nii.gz", case_id="nifti", allow_duplicate=True)

    def listed(page_size=0, **fields):
        found, token = [], ""
        while True:
            reply = stub.ListCases(
                storage_pb2.ListCasesRequest(page_size=page_size, page_token=token, **fields), metadata=ADMIN
            )
            found += [c.case_id for c in reply.cases]
            token = reply.next_page_token
            if not token:
                return found

    assert listed() == ["ge", "ge-2", "nifti", "siemens"]
    assert listed(acquisition={"manufacturer": "ge medical systems"}) == ["ge", "ge-2"]
    assert listed(page_size=1, acquisition={"manufacturer": "GE MEDICAL SYSTEMS", "modality": "CT"}) == ["ge", "ge-2"]
    assert listed(acquisition={"manufacturer": "Philips"}) == []
    assert listed(study_instance_uid=replies["siemens"].dicom.study_instance_uid) == ["siemens"]
    assert listed(series_instance_uid=replies["ge-2"].dicom.series_instance_uid) == ["ge-2"]
    with pytest.raises(grpc.RpcError) as refused:
        listed(acquisition={"patient_name": "x"})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown acquisition" in refused.value.details()


def test_a_label_version_downloads_as_dicom_seg_of_its_series(stack, unique, real_ct_dir, tmp_path, monkeypatch):
    """The real CT imported as DICOM with its labels: the original label version downloads as a SEG
    that references exactly the series' instances and decodes to the stored label map, built once.
    A case imported from NIfTI has no series to reference; where patient identifiers are kept, the
    SEG carries them and goes to admins only."""
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    paths = write_series(ct, tmp_path / "series", tags={**SCANNER, **PATIENT})
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for path in paths:
            archive.write(path, path.name)
    seg = load_nifti(real_ct_dir / "example_seg.nii.gz")
    save_nifti(seg.with_array(from_totalsegmentator(seg.array)), tmp_path / "labels.nii.gz")
    instances = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths}

    with running_storage(stack, unique, keep_patient_identifiers=True) as (stub, store, _collector, target):
        labels_upload = upload_file(stub, tmp_path / "labels.nii.gz", ADMIN)
        reply = import_file(
            stub,
            tmp_path / "series.zip",
            format=storage_pb2.CASE_FORMAT_DICOM_ZIP,
            case_id="seg-01",
            label_upload_id=labels_upload,
        )
        (version,) = stub.ListLabelVersions(
            storage_pb2.ListLabelVersionsRequest(case_id="seg-01"), metadata=ADMIN
        ).versions
        ref = _seg(stub, "seg-01", version.label_version, tmp_path / "labels.seg.dcm", ADMIN)
        stored = store.stat(layout.seg_key("seg-01", version.label_version))
        again = _seg(stub, "seg-01", version.label_version, tmp_path / "again.seg.dcm", ADMIN)
        # the command line: the newest label version (the only one here), as the admin
        monkeypatch.setenv("ATLASLOOP_STORAGE_TARGET", target)
        assert (
            cli_main(["export", "dicom-seg", "seg-01", "--out", str(tmp_path / "cli.dcm"), "--token", "tok-admin"]) == 0
        )
        assert (tmp_path / "cli.dcm").read_bytes() == (tmp_path / "labels.seg.dcm").read_bytes()
        with pytest.raises(grpc.RpcError) as refused:
            _seg(stub, "seg-01", version.label_version, tmp_path / "x.dcm", SERVICE)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        import_file(
            stub,
            real_ct_dir / "example_ct_sm.nii.gz",
            case_id="nifti-01",
            allow_duplicate=True,
            label_upload_id=upload_file(stub, tmp_path / "labels.nii.gz", ADMIN),
        )
        (nifti_version,) = stub.ListLabelVersions(
            storage_pb2.ListLabelVersionsRequest(case_id="nifti-01"), metadata=ADMIN
        ).versions
        with pytest.raises(grpc.RpcError) as no_series:
            _seg(stub, "nifti-01", nifti_version.label_version, tmp_path / "y.dcm", ADMIN)
        assert no_series.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not imported from DICOM" in no_series.value.details()

    assert ref.sha256 == again.sha256 == stored.sha256  # built once, then served as stored
    data = (tmp_path / "labels.seg.dcm").read_bytes()
    ds = pydicom.dcmread(tmp_path / "labels.seg.dcm")
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == reply.info.dicom.study_instance_uid
    assert ds.PatientID == "MRN-0042"
    referenced = {r.ReferencedSOPInstanceUID for r in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == instances
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"MANUAL"}  # an original: a person's
    identity = SeriesIdentity.from_json(MessageToDict(reply.info.dicom, preserving_proto_field_name=True))
    decoded = read_seg(data, identity, load_nifti(real_ct_dir / "example_ct_sm.nii.gz"))
    assert np.array_equal(decoded.array, from_totalsegmentator(seg.array))


def test_a_scanners_own_file_keeps_its_uids_and_its_seg_decodes(stack, unique, tmp_path):
    """A file from a GE scanner (pydicom's CT_small.dcm: signed pixels, its own UIDs, contrast and
    kernel tags, a patient name), not one of ours: imported from a zip, its UIDs and acquisition are
    kept, its patient is not, and a label map on it comes back from the SEG voxel for voxel."""
    vendor = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with zipfile.ZipFile(tmp_path / "vendor.zip", "w") as archive:
        archive.write(get_testdata_file("CT_small.dcm"), "IMG0001")
    (tmp_path / "series").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "series" / "IMG0001")
    volume, _ = read_series(tmp_path / "series")
    labels = Volume(np.random.default_rng(1).integers(0, 10, volume.shape).astype(np.uint8), volume.affine)
    save_nifti(labels, tmp_path / "labels.nii.gz")

    with running_storage(stack, unique) as (stub, store, _collector, _target):
        reply = import_file(
            stub,
            tmp_path / "vendor.zip",
            format=storage_pb2.CASE_FORMAT_DICOM_ZIP,
            case_id="vendor-ge",
            label_upload_id=upload_file(stub, tmp_path / "labels.nii.gz", ADMIN),
        )
        (version,) = stub.ListLabelVersions(
            storage_pb2.ListLabelVersionsRequest(case_id="vendor-ge"), metadata=ADMIN
        ).versions
        _seg(stub, "vendor-ge", version.label_version, tmp_path / "vendor.seg.dcm", ADMIN)
        meta = store.get_bytes(layout.meta_key("vendor-ge"))

    dicom = reply.info.dicom
    assert (dicom.study_instance_uid, dicom.series_instance_uid, dicom.frame_of_reference_uid) == (
        vendor.StudyInstanceUID,
        vendor.SeriesInstanceUID,
        vendor.FrameOfReferenceUID,
    )
    assert [i.sop_instance_uid for i in dicom.instances] == [vendor.SOPInstanceUID]
    assert dicom.acquisition["manufacturer"] == "GE MEDICAL SYSTEMS" and dicom.acquisition["kernel"] == "STANDARD"
    assert dicom.acquisition["contrast_agent"] == "ISOVUE300/100" and dict(dicom.patient) == {}
    seg_bytes = (tmp_path / "vendor.seg.dcm").read_bytes()
    for where in (meta, seg_bytes):
        assert str(vendor.PatientName).encode() not in where and vendor.PatientID.encode() not in where
    seg = pydicom.dcmread(tmp_path / "vendor.seg.dcm")
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == vendor.SeriesInstanceUID
    assert [r.ReferencedSOPInstanceUID for r in referenced.ReferencedInstanceSequence] == [vendor.SOPInstanceUID]
    identity = SeriesIdentity.from_json(MessageToDict(dicom, preserving_proto_field_name=True))
    assert np.array_equal(read_seg(seg_bytes, identity, labels).array, labels.array)
