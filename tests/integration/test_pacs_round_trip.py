"""The hospital round trip through a real PACS (Orthanc with its DICOMweb plugin, started by the
project's own scripts): a CT series stored in Orthanc is imported by ``atlasloop import --dicomweb``
with its UIDs, a label version goes back to Orthanc as DICOM SEG by STOW-RS, and the SEG Orthanc
then serves (WADO-RS) references exactly the series' instances and decodes to the label map voxel
for voxel."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile

import numpy as np
import pydicom
import pytest
from google.protobuf.json_format import MessageToDict

from atlasloop.cli.__main__ import main as cli_main
from atlasloop.common import layout
from atlasloop.common.approvals import Verified
from atlasloop.common.dicomweb import DicomWebClient, split_multipart
from atlasloop.common.errors import InvalidInput, NotFound, NotReady, TooLarge
from atlasloop.common.events import EventConsumer, EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.transfer import download_volume, upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.dicom_identity import SeriesIdentity
from atlasloop.imaging.dicom_seg import read_seg
from atlasloop.imaging.dicom_write import write_series
from atlasloop.imaging.labels import from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.storage.catalog import Catalog
from atlasloop.storage.label_versions import LabelVersions
from atlasloop.storage.pacs_sender import ApprovedToPacs
from atlasloop.storage.seg_exports import SegExports
from atlasloop.storage.v1 import storage_pb2

from .storage_service import ADMIN, SERVICE, TRACKING, import_file, running_storage

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

    with running_storage(stack, unique) as (stub, _store, _collector, target):
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
    with pytest.raises(InvalidInput, match="DICOM keyword or tag"):
        client.studies({"StudyDate&limit": "1"})
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


def test_the_watcher_imports_each_new_matching_study_once(
    stack, unique, pacs, real_ct_dir, tmp_path, monkeypatch, capsys
):
    """``atlasloop watch-pacs``: the studies matching its query are imported once each, across
    restarts (its state file); others are left alone; with storage away a new study stays new."""
    access, client = pacs
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    monkeypatch.setenv("ATLASLOOP_DICOMWEB_USER", access.username)
    monkeypatch.setenv("ATLASLOOP_DICOMWEB_PASSWORD", access.password)

    def scanned(index: int, description: str) -> str:
        """A study of one series in the PACS (a different crop each: storage refuses duplicates)."""
        paths = write_series(
            ct.with_array(ct.array[:, :, index : index + 12]),
            tmp_path / f"study-{index}",
            tags={"StudyDescription": description},
        )
        client.store([p.read_bytes() for p in paths])
        return str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)

    def poll(target: str) -> tuple[int, dict]:
        argv = ["watch-pacs", access.dicomweb_url, "--query", f"StudyDescription=WATCH{unique}*"]
        argv += ["--state", str(tmp_path / "state.json"), "--once", "--json"]
        argv += ["--target", target, "--token", "tok-admin"]
        code = cli_main(argv)
        out = capsys.readouterr().out.strip()
        return code, json.loads(out) if out else {}

    first, second = scanned(0, f"WATCH{unique} abdomen"), scanned(12, f"WATCH{unique} follow-up")
    scanned(3, f"OTHER{unique} abdomen")  # does not match the query
    with running_storage(stack, unique) as (stub, _store, _collector, target):
        code, done = poll(target)
        assert code == 0 and sorted(done) == sorted([first, second])
        for study, record in done.items():
            (outcome,) = record["outcomes"]
            assert outcome["status"] == "imported"
            info = stub.GetCase(storage_pb2.GetCaseRequest(case_id=outcome["case_id"]), metadata=ADMIN).info
            assert info.dicom.study_instance_uid == study
        assert poll(target) == (0, {})  # nothing new: nothing imported again
        third = scanned(24, f"WATCH{unique} third")
        code, done = poll(target)
        assert code == 0 and list(done) == [third]
    fourth = scanned(15, f"WATCH{unique} fourth")
    code, _ = poll("127.0.0.1:1")  # storage away: an error, and the study stays new
    assert code != 0
    state = json.loads((tmp_path / "state.json").read_text())
    assert sorted(state["studies"]) == sorted([first, second, third]) and fourth not in state["studies"]


class TrackingSays:
    """Tracking's answer to ``GetRevision``: revision ``rev-ok`` is approved, anything else is not
    (the real ApprovalCheck's behaviour against tracking is tested in test_training_triggers)."""

    def __init__(self, label_version: str, case_id: str) -> None:
        self.asked: list[str] = []
        self._approved = Verified("rev-ok", case_id, label_version, ["liver"])

    def verify(self, event):
        self.asked.append(event.revision_id)
        return self._approved if event.revision_id == "rev-ok" else None


def test_an_approved_label_reaches_the_pacs_once_and_a_forged_approval_sends_nothing(
    stack, unique, pacs, real_ct_dir, tmp_path
):
    access, client = pacs
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    paths = write_series(ct.with_array(ct.array[:, :, :12]), tmp_path / "series")
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for path in paths:
            archive.write(path, path.name)
    source = pydicom.dcmread(paths[0], stop_before_pixels=True)
    study = source.StudyInstanceUID
    client.store([p.read_bytes() for p in paths])

    with running_storage(stack, unique) as (stub, store, _collector, _target):
        import_file(stub, tmp_path / "series.zip", format=storage_pb2.CASE_FORMAT_DICOM_ZIP, case_id="pacs-1")
        labels = Volume(np.zeros((122, 101, 12), np.uint8), ct.affine)
        labels.array[40:60, 30:50, 2:8] = 5
        save_nifti(labels, tmp_path / "human.nii.gz")
        version = stub.WriteLabelVersion(
            storage_pb2.WriteLabelVersionRequest(
                case_id="pacs-1", upload_id=upload_file(stub, tmp_path / "human.nii.gz", ADMIN)
            ),
            metadata=TRACKING,
        ).version.label_version
        core_store = ObjectStore(stack.s3_settings(bucket=f"storage-{unique}"))
        labels_db = LabelVersions(core_store)
        sender = ApprovedToPacs(
            TrackingSays(version, "pacs-1"),
            Catalog(core_store, labels_db),
            SegExports(core_store, labels_db),
            core_store,
            client,
            access.dicomweb_url,
        )
        kafka = stack.kafka_settings().model_copy(update={"topic_prefix": f"p{unique}."})
        producer = EventProducer(kafka, "tracking")
        for revision in ("forged", "rev-ok", "rev-ok"):  # a forgery, then the approval delivered twice
            producer.publish(
                events_pb2.AnnotationApproved(
                    meta=new_meta("tracking"), case_id="pacs-1", revision_id=revision, label_version=version
                ),
                key="pacs-1",
            )
        sent = []
        consumer = EventConsumer(
            kafka, "storage-pacs", [events_pb2.AnnotationApproved], lambda e, _d: sent.append(sender.on_approved(e))
        )
        deadline = time.monotonic() + 60
        while len(sent) < 3 and time.monotonic() < deadline:
            consumer.poll_once(0.5)
        consumer.close()
        producer.close()
        assert sent == [False, True, False]  # refused, sent, already sent
        record = store.get_json(layout.seg_sent_key("pacs-1", version))

    seg_series = [s for s in client.series_of(study) if s != source.SeriesInstanceUID]
    assert len(seg_series) == 1
    (returned,) = client.retrieve_series(study, seg_series[0], tmp_path / "sent")
    seg = pydicom.dcmread(returned)
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"MANUAL"}
    assert hashlib.sha256(returned.read_bytes()).hexdigest() == record["sha256"]  # the very bytes built
    assert record["revision_id"] == "rev-ok" and record["pacs"] == access.dicomweb_url

    # the PACS away: the client answers NotReady, which a consumer counts as a wait for the PACS
    # (atlasloop.common.outages), not as a try of a poison event; it answers again once back
    stack.processes.stop("orthanc")
    with pytest.raises(NotReady):
        DicomWebClient(access.dicomweb_url, access.username, access.password, timeout_s=5).series_of(study)
    stack.start_orthanc()
    assert client.series_of(study) == sorted([source.SeriesInstanceUID, seg_series[0]])
