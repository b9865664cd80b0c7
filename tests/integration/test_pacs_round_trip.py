"""The hospital round trip through a real PACS (Orthanc with its DICOMweb plugin, started by the
project's own scripts): a CT series stored in Orthanc is imported by ``atlasloop import --dicomweb``
with its UIDs, a label version goes back to Orthanc as DICOM SEG by STOW-RS, and the SEG Orthanc
then serves (WADO-RS) references exactly the series' instances and decodes to the label map voxel
for voxel."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from google.protobuf.json_format import MessageToDict

from atlasloop.cli.__main__ import main as cli_main
from atlasloop.common.dicomweb import DicomWebClient, split_multipart
from atlasloop.common.errors import InvalidInput, NotFound, TooLarge
from atlasloop.common.transfer import download_volume, upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.dicom_identity import SeriesIdentity
from atlasloop.imaging.dicom_seg import read_seg
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.labels import from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.storage.v1 import storage_pb2

from .test_storage_service import ADMIN, SERVICE, _storage

pytestmark = pytest.mark.integration


@pytest.fixture
def pacs(stack):
    access = stack.start_orthanc()
    return access, DicomWebClient(access.dicomweb_url, access.username, access.password)


def test_a_study_from_the_pacs_comes_back_to_it_as_dicom_seg(
    stack, unique, pacs, real_ct_dir, tmp_path, monkeypatch, capsys
):
    access, client = pacs
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    paths = write_series(ct, tmp_path / "series", tags={"Manufacturer": "SIEMENS", "PatientID": "MRN-9"})
    source = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    study, series = source[0].StudyInstanceUID, source[0].SeriesInstanceUID
    client.store([p.read_bytes() for p in paths])  # the hospital's scanner filled the PACS
    assert client.series_of(study) == [series]

    with _storage(stack, unique) as (stub, _store, _collector, target):
        monkeypatch.setenv("ATLASLOOP_DICOMWEB_USER", access.username)
        monkeypatch.setenv("ATLASLOOP_DICOMWEB_PASSWORD", access.password)
        argv = ["import", "--dicomweb", access.dicomweb_url, "--study", study, "--json"]
        assert cli_main([*argv, "--target", target, "--token", "tok-admin"]) == 0
        (outcome,) = json.loads(capsys.readouterr().out)
        assert (outcome["status"], outcome["case_id"]) == ("imported", series)  # the series UID names the case

        info = stub.GetCase(storage_pb2.GetCaseRequest(case_id=series), metadata=ADMIN).info
        assert (info.dicom.study_instance_uid, info.dicom.series_instance_uid) == (study, series)
        assert [i.sop_instance_uid for i in info.dicom.instances] == [
            ds.SOPInstanceUID for ds in sorted(source, key=lambda ds: float(ds.ImagePositionPatient[2]))
        ]
        assert info.dicom.acquisition["manufacturer"] == "SIEMENS" and dict(info.dicom.patient) == {}

        # the models label it; that label goes back to the PACS as SEG
        labels = Volume(from_totalsegmentator(load_nifti(real_ct_dir / "example_seg.nii.gz").array), ct.affine)
        save_nifti(labels, tmp_path / "ai.nii.gz")
        version = stub.WriteLabelVersion(
            storage_pb2.WriteLabelVersionRequest(
                case_id=series,
                upload_id=upload_file(stub, tmp_path / "ai.nii.gz", ADMIN),
                source=common_pb2.LABEL_SOURCE_AI,
                model_set="set-1",
            ),
            metadata=SERVICE,
        ).version.label_version
        download_volume(
            stub, series, tmp_path / "ai.seg.dcm", ADMIN, kind=common_pb2.VOLUME_KIND_DICOM_SEG, label_version=version
        )

    client.store([(tmp_path / "ai.seg.dcm").read_bytes()])
    seg_series = [s for s in client.series_of(study) if s != series]
    assert len(seg_series) == 1  # the SEG filed in the same study, as a series of its own
    (returned,) = client.retrieve_series(study, seg_series[0], tmp_path / "from-pacs")
    seg = pydicom.dcmread(returned)
    assert seg.Modality == "SEG" and seg.PatientID == ""  # identifiers were not kept: none went out
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in source}
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"AUTOMATIC"}
    identity = SeriesIdentity.from_json(MessageToDict(info.dicom, preserving_proto_field_name=True))
    decoded = read_seg(returned.read_bytes(), identity, ct)
    assert np.array_equal(decoded.array, labels.array)


def test_the_pacs_client_refuses_what_it_should(pacs, tmp_path):
    access, client = pacs
    volume = Volume(np.full((8, 8, 3), 40, np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
    paths = write_series(volume, tmp_path / "small")
    client.store([p.read_bytes() for p in paths])
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)

    with pytest.raises(InvalidInput, match="not a DICOM UID"):
        client.series_of("1.2/../../system")
    with pytest.raises(NotFound):
        client.retrieve_series(first.StudyInstanceUID, "1.2.3.4", tmp_path / "x")
    with pytest.raises(InvalidInput, match="credentials"):
        DicomWebClient(access.dicomweb_url, access.username, "wrong").series_of(first.StudyInstanceUID)
    small = DicomWebClient(access.dicomweb_url, access.username, access.password, max_bytes=1000)
    with pytest.raises(TooLarge, match="limit"):
        small.retrieve_series(first.StudyInstanceUID, first.SeriesInstanceUID, tmp_path / "y")
    assert not (tmp_path / "y").exists()  # nothing written from a refused answer
    with pytest.raises(InvalidInput, match="refused"):
        client.store([b"not DICOM at all"])
    with pytest.raises(InvalidInput, match="cut off"):
        split_multipart(b"--b\r\nContent-Type: application/dicom\r\n\r\nDICM", 'multipart/related; boundary="b"')
    with pytest.raises(InvalidInput, match="boundary"):
        split_multipart(b"{}", "application/json")
