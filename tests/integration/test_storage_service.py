"""The storage service against the real S3 (SeaweedFS) and Kafka (Tansu)."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request
import uuid
import zipfile

import grpc
import numpy as np
import pytest

from atlasloop.common import layout
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.transfer import download_volume, upload_file, upload_requests
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging import display_copy
from atlasloop.imaging.labels import from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.storage.app import build
from atlasloop.storage.settings import StorageSettings
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

from .conftest import start_in_process
from .storage_service import ADMIN, SERVICE, TOKENS, TRACKING, import_file

pytestmark = pytest.mark.integration


@pytest.fixture
def atlas_zip(real_ct_dir, tmp_path):
    """The real CT with its TotalSegmentator labels as an AbdomenAtlas case folder, zipped."""
    case = tmp_path / "real_case"
    case.mkdir()
    shutil.copy(real_ct_dir / "example_ct_sm.nii.gz", case / "ct.nii.gz")
    seg = load_nifti(real_ct_dir / "example_seg.nii.gz")
    save_nifti(seg.with_array(from_totalsegmentator(seg.array)), case / "combined_labels.nii.gz")
    path = tmp_path / "real_case.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in case.iterdir():
            archive.write(file, f"real_case/{file.name}")
    return path


def test_import_atlas_case_download_back_and_detect_duplicate(storage, atlas_zip, real_ct_dir, tmp_path):
    stub, store, collector = storage
    reply = import_file(
        stub,
        atlas_zip,
        format=storage_pb2.CASE_FORMAT_ABDOMENATLAS_ZIP,
        case_id="real-ct-01",
        source="TotalSegmentator test fixture",
    )
    assert (reply.case_id, reply.duplicate) == ("real-ct-01", False)
    assert list(reply.info.geometry.shape) == [122, 101, 30] and reply.info.geometry.orientation == "RAS"
    assert (reply.info.hu_min, reply.info.hu_max) == (-1100, 1207)

    ref = download_volume(stub, "real-ct-01", tmp_path / "ct.nii.gz", ADMIN, chunk_bytes=100_000)
    assert ref.sha256 == reply.info.ct.sha256 == hashlib.sha256((tmp_path / "ct.nii.gz").read_bytes()).hexdigest()
    original = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    back = load_nifti(tmp_path / "ct.nii.gz")
    assert np.array_equal(back.array, original.array) and np.allclose(back.affine, original.affine)
    stored_copy = store.get_bytes(layout.display_ct_key("real-ct-01"))
    assert stored_copy.startswith(display_copy.MAGIC)  # in bricks: the renderer reads a plane's
    display = display_copy.decode(stored_copy, "display copy")
    assert np.array_equal(display.array, back.array) and np.allclose(display.affine, back.affine)  # what viewers read

    versions = stub.ListLabelVersions(
        storage_pb2.ListLabelVersionsRequest(case_id="real-ct-01"), metadata=ADMIN
    ).versions
    assert [v.source for v in versions] == [common_pb2.LABEL_SOURCE_ORIGINAL]
    download_volume(
        stub,
        "real-ct-01",
        tmp_path / "lab.nii.gz",
        ADMIN,
        kind=common_pb2.VOLUME_KIND_LABEL,
        label_version=versions[0].label_version,
    )
    expected = from_totalsegmentator(load_nifti(real_ct_dir / "example_seg.nii.gz").array)
    assert np.array_equal(load_nifti(tmp_path / "lab.nii.gz").array, expected)
    key = layout.display_label_key("real-ct-01", versions[0].label_version)
    stored_copy = store.get_bytes(key)
    assert stored_copy.startswith(display_copy.MAGIC_V2)  # in slabs: read whole
    assert np.array_equal(display_copy.decode(stored_copy, key).array, expected)  # its display copy

    # The same CT again, now as a plain NIfTI: recognised by content, no second case, no event.
    again = import_file(stub, real_ct_dir / "example_ct_sm.nii.gz")
    assert (again.case_id, again.duplicate) == ("real-ct-01", True)
    received = collector.wait_for(1)
    assert [(e.case_id, e.original_label_version) for e in received] == [("real-ct-01", versions[0].label_version)]
    # the uploads are gone; their receipts stay, so that a retried import returns this case
    assert [k for k in store.list_keys(layout.STAGING) if not k.endswith(".receipt.json")] == []
    listed = stub.ListCases(storage_pb2.ListCasesRequest(), metadata=ADMIN)
    assert [c.case_id for c in listed.cases] == ["real-ct-01"] and listed.next_page_token == ""


def _nothing_left(store, collector):
    assert store.list_keys(layout.CASES) == [] and store.list_keys(layout.CONTENT_INDEX) == []
    assert collector.wait_for(1, timeout_s=2) == []


def test_storage_names_the_projects_structures(storage):
    """GetLabelSchema: what every id in a label map and an organ field stands for, as JSON that
    reads back to the service's schema and as structures."""
    from atlasloop.common.project_schema import stored_schema
    from atlasloop.imaging.schema import BUILTIN, schema_from_dict

    stub, store, _collector = storage
    reply = stub.GetLabelSchema(storage_pb2.GetLabelSchemaRequest(), metadata=ADMIN, timeout=10)
    expected = BUILTIN["abdomenatlas-1.0"]
    assert (reply.name, reply.fingerprint) == (expected.name, expected.fingerprint)
    assert [(s.id, s.name) for s in reply.structures] == list(expected.names.items())
    liver = next(s for s in reply.structures if s.name == "liver")
    assert list(liver.color) == [221, 130, 101] and list(liver.volume_ml) == [700.0, 3000.0]
    assert [s.name for s in reply.structures if s.vessel] == ["aorta", "postcava"]
    assert schema_from_dict(json.loads(reply.json)) == expected
    assert stored_schema(store) == expected  # recorded in the bucket when the service became ready
    with pytest.raises(grpc.RpcError) as err:
        stub.GetLabelSchema(storage_pb2.GetLabelSchemaRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_upload_cut_off_midway_leaves_nothing(storage, real_ct_dir):
    stub, store, collector = storage

    def cut_off():
        for i, message in enumerate(upload_requests(real_ct_dir / "example_ct_sm.nii.gz", 50_000)):
            if i == 4:
                raise ConnectionError("client went away")
            yield message

    with pytest.raises(grpc.RpcError):
        stub.UploadVolume(cut_off(), metadata=ADMIN, timeout=30)

    def short():
        for i, message in enumerate(upload_requests(real_ct_dir / "example_ct_sm.nii.gz", 50_000)):
            if i < 4:
                yield message

    with pytest.raises(grpc.RpcError) as err:
        stub.UploadVolume(short(), metadata=ADMIN, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ended early" in err.value.details()
    assert store.list_keys(layout.STAGING) == []
    _nothing_left(store, collector)


def test_checksum_mismatch_and_oversize_refused(storage, real_ct_dir, tmp_path):
    stub, store, collector = storage
    messages = list(upload_requests(real_ct_dir / "example_ct_sm.nii.gz"))
    messages[0].header.sha256 = "0" * 64
    with pytest.raises(grpc.RpcError) as err:
        stub.UploadVolume(iter(messages), metadata=ADMIN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "checksum" in err.value.details()
    messages[0].header.size_bytes = 10**12
    with pytest.raises(grpc.RpcError) as err:
        stub.UploadVolume(iter(messages), metadata=ADMIN)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert store.list_keys(layout.STAGING) == []
    _nothing_left(store, collector)


def test_bad_case_id_and_bad_image_change_nothing(storage, real_ct_dir, tmp_path):
    stub, store, collector = storage
    with pytest.raises(grpc.RpcError) as err:
        import_file(stub, real_ct_dir / "example_ct_sm.nii.gz", case_id="../escape")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not valid" in err.value.details()
    broken = tmp_path / "broken.nii.gz"
    data = (real_ct_dir / "example_ct_sm.nii.gz").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(grpc.RpcError) as err:
        import_file(stub, broken)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "broken.nii.gz" in err.value.details()
    _nothing_left(store, collector)


def test_label_versions_are_new_and_checked_against_the_case(storage, real_ct_dir, tmp_path):
    stub, _, _ = storage
    case_id = import_file(stub, real_ct_dir / "example_ct_sm.nii.gz", case_id="lv-1").case_id
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    labels = np.zeros(ct.shape, np.uint8)
    labels[40:60, 40:60, 10:20] = 5
    save_nifti(Volume(labels, ct.affine), tmp_path / "ai.nii.gz")
    written = []
    for n, parent in enumerate(("", None)):  # a later model set's version, with the first as its parent
        upload_id = upload_file(stub, tmp_path / "ai.nii.gz", ADMIN)
        reply = stub.WriteLabelVersion(
            storage_pb2.WriteLabelVersionRequest(
                case_id=case_id,
                upload_id=upload_id,
                source=common_pb2.LABEL_SOURCE_AI,
                model_set=f"ms-{n + 1}",
                round=1,
                parent_version=written[-1] if parent is None else parent,
            ),
            metadata=SERVICE,
        )
        written.append(reply.version.label_version)
    versions = stub.ListLabelVersions(storage_pb2.ListLabelVersionsRequest(case_id=case_id), metadata=ADMIN)
    assert [v.label_version for v in versions.versions] == written and written[0] != written[1]
    assert versions.versions[1].parent_version == written[0]
    save_nifti(Volume(labels[:-1], ct.affine), tmp_path / "wrong.nii.gz")
    upload_id = upload_file(stub, tmp_path / "wrong.nii.gz", ADMIN)
    with pytest.raises(grpc.RpcError) as err:
        stub.WriteLabelVersion(
            storage_pb2.WriteLabelVersionRequest(
                case_id=case_id, upload_id=upload_id, source=common_pb2.LABEL_SOURCE_HUMAN
            ),
            metadata=TRACKING,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not match" in err.value.details()
    save_nifti(Volume(np.full(ct.shape, 52, np.uint8), ct.affine), tmp_path / "foreign.nii.gz")
    upload_id = upload_file(stub, tmp_path / "foreign.nii.gz", ADMIN)
    with pytest.raises(grpc.RpcError) as err:
        stub.WriteLabelVersion(
            storage_pb2.WriteLabelVersionRequest(
                case_id=case_id, upload_id=upload_id, source=common_pb2.LABEL_SOURCE_HUMAN
            ),
            metadata=TRACKING,
        )
    assert "outside the schema" in err.value.details()
    assert (
        len(stub.ListLabelVersions(storage_pb2.ListLabelVersionsRequest(case_id=case_id), metadata=ADMIN).versions) == 2
    )


def test_a_label_version_downloads_as_its_display_copy_with_the_same_voxels(storage, real_ct_dir, tmp_path):
    """Viewers read the display-ready copy storage keeps beside each label version (the page's first
    picture); it holds the NIfTI's voxels and affine, its stream is checksummed like any download,
    and where there is none the answer is NOT_FOUND (the caller reads the NIfTI)."""
    stub, store, _ = storage
    case_id = import_file(stub, real_ct_dir / "example_ct_sm.nii.gz", case_id="disp-1").case_id
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    labels = np.zeros(ct.shape, np.uint8)
    labels[40:60, 40:60, 10:20] = 5
    labels[10:20, 30:35, 3:5] = 2
    save_nifti(Volume(labels, ct.affine), tmp_path / "ai.nii.gz")
    version = stub.WriteLabelVersion(
        storage_pb2.WriteLabelVersionRequest(
            case_id=case_id, upload_id=upload_file(stub, tmp_path / "ai.nii.gz", ADMIN),
            source=common_pb2.LABEL_SOURCE_AI, model_set="ms-1", round=1,
        ),
        metadata=SERVICE,
    ).version.label_version  # fmt: skip
    kind = common_pb2.VOLUME_KIND_LABEL
    nifti = download_volume(stub, case_id, tmp_path / "l.nii.gz", ADMIN, kind=kind, label_version=version)
    copy = download_volume(
        stub, case_id, tmp_path / "l.display", ADMIN, kind=kind, label_version=version, display_copy=True
    )
    assert copy.key == layout.display_label_key(case_id, version) != nifti.key
    assert copy.sha256 == hashlib.sha256((tmp_path / "l.display").read_bytes()).hexdigest()
    shown = display_copy.decode((tmp_path / "l.display").read_bytes(), "test")
    stored = load_nifti(tmp_path / "l.nii.gz")
    assert np.array_equal(shown.array, stored.array) and np.allclose(shown.affine, stored.affine)
    assert np.array_equal(shown.array, labels)

    store.delete(layout.display_label_key(case_id, version))  # as for a version stored before copies
    with pytest.raises(grpc.RpcError) as missing:
        download_volume(stub, case_id, tmp_path / "gone", ADMIN, kind=kind, label_version=version, display_copy=True)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "read the NIfTI" in missing.value.details()


@pytest.mark.parametrize(
    ("who", "source", "refusal"),
    [
        ("tok-ann", common_pb2.LABEL_SOURCE_HUMAN, "needs one of the roles"),  # people revise through tracking
        ("tok-svc", common_pb2.LABEL_SOURCE_HUMAN, "may not write human"),  # inference writes AI only
        ("tok-trk", common_pb2.LABEL_SOURCE_AI, "may not write ai"),  # tracking writes human only
        ("tok-trk", common_pb2.LABEL_SOURCE_ORIGINAL, "may not write original"),  # originals: admin import only
        ("tok-trn", common_pb2.LABEL_SOURCE_UNSPECIFIED, "may not write label versions"),  # training reads only
    ],
)
def test_label_provenance_is_decided_by_the_caller_and_a_refusal_leaves_nothing(
    storage, real_ct_dir, tmp_path, who, source, refusal
):
    stub, store, _ = storage
    case_id = import_file(stub, real_ct_dir / "example_ct_sm.nii.gz", case_id="prov-1").case_id
    ct = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    save_nifti(Volume(np.zeros(ct.shape, np.uint8), ct.affine), tmp_path / "l.nii.gz")
    upload_id = upload_file(stub, tmp_path / "l.nii.gz", ADMIN)
    before = sorted(store.list_keys(f"cases/{case_id}/"))
    with pytest.raises(grpc.RpcError) as err:
        stub.WriteLabelVersion(
            storage_pb2.WriteLabelVersionRequest(case_id=case_id, upload_id=upload_id, source=source),
            metadata=[("authorization", f"Bearer {who}")],
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and refusal in err.value.details()
    assert sorted(store.list_keys(f"cases/{case_id}/")) == before


def test_only_an_admin_imports_labels_as_originals(storage, real_ct_dir, atlas_zip):
    stub, store, _ = storage
    with pytest.raises(grpc.RpcError) as err:  # a service importing a case with its labels
        stub.ImportCase(
            storage_pb2.ImportCaseRequest(
                upload_id=upload_file(stub, real_ct_dir / "example_ct_sm.nii.gz", ADMIN),
                label_upload_id=upload_file(stub, real_ct_dir / "example_seg.nii.gz", ADMIN),
                case_id="orig-1",
            ),
            metadata=SERVICE,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # labels inside an AbdomenAtlas case zip are originals too
        stub.ImportCase(
            storage_pb2.ImportCaseRequest(
                upload_id=upload_file(stub, atlas_zip, ADMIN),
                case_id="orig-2",
                format=storage_pb2.CASE_FORMAT_ABDOMENATLAS_ZIP,
            ),
            metadata=SERVICE,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not store.list_keys("cases/orig-1/") and not store.list_keys("cases/orig-2/")


def _post_form(url: str, fields: dict, data: bytes) -> int:
    """A browser's multipart/form-data upload: the fields, then the file as ``file``."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, data=b"".join(parts), method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_presigned_upload_then_import_then_presigned_get(storage, real_ct_dir):
    """A presigned upload is a form the store checks itself: the file goes in under the size the
    caller asked for, and a larger one is refused by S3 and leaves nothing to import."""
    stub, store, _ = storage
    data = (real_ct_dir / "example_ct_sm.nii.gz").read_bytes()
    form = stub.PresignUpload(
        storage_pb2.PresignUploadRequest(file_name="scan.nii.gz", expires_s=60, max_bytes=len(data)), metadata=ADMIN
    )
    assert form.max_bytes == len(data)
    assert _post_form(form.url, dict(form.fields), data) in (200, 204)
    reply = stub.ImportCase(storage_pb2.ImportCaseRequest(upload_id=form.upload_id, case_id="via-http"), metadata=ADMIN)
    get = stub.PresignDownload(
        storage_pb2.PresignDownloadRequest(case_id="via-http", kind=common_pb2.VOLUME_KIND_CT), metadata=ADMIN
    )
    with urllib.request.urlopen(get.url, timeout=30) as response:
        assert hashlib.sha256(response.read()).hexdigest() == reply.info.ct.sha256

    small = stub.PresignUpload(
        storage_pb2.PresignUploadRequest(file_name="scan.nii.gz", max_bytes=1000), metadata=ADMIN
    )
    assert _post_form(small.url, dict(small.fields), data) == 400  # EntityTooLarge, from the store
    assert not store.exists(layout.staging_key(small.upload_id))
    with pytest.raises(grpc.RpcError) as err:
        stub.ImportCase(storage_pb2.ImportCaseRequest(upload_id=small.upload_id), metadata=ADMIN)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    unlimited = stub.PresignUpload(storage_pb2.PresignUploadRequest(file_name="a.nii.gz"), metadata=ADMIN)
    assert unlimited.max_bytes == 64 * 1024 * 1024  # the service's upload limit, never more


def test_broker_down_rolls_back_theimport_file(stack, unique, real_ct_dir):
    settings = StorageSettings(
        port=0,
        health_poll_s=60,
        s3=stack.s3_settings(bucket=f"storage-nb-{unique}"),
        kafka={"bootstrap_servers": "127.0.0.1:1", "publish_timeout_s": 2, "create_topics": False},
        auth={"dev_tokens": TOKENS},
    )
    from atlasloop.common.server import GrpcService

    service = GrpcService(build(settings), settings)
    service.start()
    store = ObjectStore(settings.s3)
    store.check_bucket()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                import_file(stub, real_ct_dir / "example_ct_sm.nii.gz", case_id="no-broker")
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert store.list_keys(layout.CASES) == [] and store.list_keys(layout.CONTENT_INDEX) == []
    finally:
        service.stop(0)


def test_a_retried_request_makes_nothing_twice(storage, real_ct_dir, tmp_path):
    """The same import or label write sent again (its answer was lost, the service was restarted)
    returns what the first made; a write cut short by a crash is finished under the names its
    receipt promised; an upload is never used by a second caller."""
    stub, store, collector = storage
    ct_path = real_ct_dir / "example_ct_sm.nii.gz"
    request = storage_pb2.ImportCaseRequest(upload_id=upload_file(stub, ct_path, ADMIN), case_id="retry-1")
    first, again = (stub.ImportCase(request, metadata=ADMIN) for _ in range(2))
    assert again.info.case_id == first.info.case_id == "retry-1" and not again.duplicate
    # the second answer announced the case again: a first try that died before publishing is covered
    ingested = [e for e in collector.wait_for(2) if e.case_id == "retry-1"]
    assert len(ingested) == 2 and ingested[0].ct.sha256 == ingested[1].ct.sha256

    ct = load_nifti(ct_path)
    save_nifti(Volume(np.zeros(ct.shape, np.uint8), ct.affine), tmp_path / "l.nii.gz")
    write = storage_pb2.WriteLabelVersionRequest(
        case_id="retry-1",
        upload_id=upload_file(stub, tmp_path / "l.nii.gz", ADMIN),
        source=common_pb2.LABEL_SOURCE_HUMAN,
    )
    versions = [stub.WriteLabelVersion(write, metadata=TRACKING).version.label_version for _ in range(2)]
    assert versions[0] == versions[1]
    listed = stub.ListLabelVersions(storage_pb2.ListLabelVersionsRequest(case_id="retry-1"), metadata=ADMIN)
    assert [v.label_version for v in listed.versions] == versions[:1]
    with pytest.raises(grpc.RpcError) as err:  # someone else's upload
        stolen = storage_pb2.WriteLabelVersionRequest(
            case_id="retry-1", upload_id=write.upload_id, source=common_pb2.LABEL_SOURCE_AI
        )
        stub.WriteLabelVersion(stolen, metadata=SERVICE)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "another caller" in err.value.details()

    # A crash after the receipt, before the objects: the retry finishes under the promised version.
    upload_id = upload_file(stub, tmp_path / "l.nii.gz", ADMIN)
    promised = "20261205T000000000000-0badcafe"
    store.put_json(
        layout.upload_receipt_key(upload_id),
        {"kind": "label", "case_id": "retry-1", "version": promised, "author": "tracking"},
    )
    write = storage_pb2.WriteLabelVersionRequest(
        case_id="retry-1", upload_id=upload_id, source=common_pb2.LABEL_SOURCE_HUMAN
    )
    assert stub.WriteLabelVersion(write, metadata=TRACKING).version.label_version == promised

    # A model set labels a case once: the ensemble's writer, run again because it could not record
    # that it had finished, uploads afresh and gets the version its first run wrote.
    def ai_write(model_set: str, upload_id: str) -> str:
        request = storage_pb2.WriteLabelVersionRequest(
            case_id="retry-1", upload_id=upload_id, source=common_pb2.LABEL_SOURCE_AI, model_set=model_set
        )
        return stub.WriteLabelVersion(request, metadata=SERVICE).version.label_version

    uploads = [upload_file(stub, tmp_path / "l.nii.gz", SERVICE) for _ in range(3)]
    first, again, other_set = (
        ai_write("set-a", uploads[0]),
        ai_write("set-a", uploads[1]),
        ai_write("set-b", uploads[2]),
    )
    assert first == again != other_set
    listed = stub.ListLabelVersions(storage_pb2.ListLabelVersionsRequest(case_id="retry-1"), metadata=ADMIN)
    ai = [(v.model_set, v.label_version) for v in listed.versions if v.source == common_pb2.LABEL_SOURCE_AI]
    assert sorted(ai) == [("set-a", first), ("set-b", other_set)]
    assert not store.list_keys(layout.staging_key(uploads[1]))  # the second upload was dropped, not kept
    with pytest.raises(grpc.RpcError) as err:  # an upload that does not exist is still an error
        ai_write("set-a", f"up-{uuid.uuid4().hex}")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # and an import cut short the same way becomes the case its receipt named, not a new one
    other = load_nifti(ct_path)
    save_nifti(other.with_array(other.array + 1), tmp_path / "other.nii.gz")
    upload_id = upload_file(stub, tmp_path / "other.nii.gz", ADMIN)
    store.put_json(
        layout.upload_receipt_key(upload_id),
        {"kind": "import", "case_id": "retry-2", "original_version": "", "author": "ops"},
    )
    reply = stub.ImportCase(storage_pb2.ImportCaseRequest(upload_id=upload_id), metadata=ADMIN)
    assert reply.info.case_id == "retry-2"
    assert sorted(layout.case_id_of(p) for p in store.list_prefixes(layout.CASES)) == ["retry-1", "retry-2"]


def test_staged_uploads_expire_by_a_lifecycle_rule_that_keeps_the_operators_own(stack, unique):
    """Abandoned uploads and old receipts under staging/ expire (``staging_expiry_days``); the rule
    joins the bucket's lifecycle configuration by its id, leaving an operator's rules alone."""
    from minio.commonconfig import ENABLED, Filter
    from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

    from atlasloop.storage.staging_expiry import RULE_ID

    s3 = stack.s3_settings(bucket=f"storage-lc-{unique}")
    store = ObjectStore(s3)
    store.check_bucket()
    theirs = Rule(ENABLED, rule_filter=Filter(prefix="logs/"), rule_id="operator-logs", expiration=Expiration(days=30))
    store.client.set_bucket_lifecycle(store.bucket, LifecycleConfig([theirs]))
    settings = StorageSettings(
        port=0,
        health_poll_s=60,
        s3=s3,
        kafka=stack.kafka_settings(),
        staging_expiry_days=3,
        auth={"dev_tokens": TOKENS},
    )
    service, channel = start_in_process(build(settings), settings)
    try:
        rules = {r.rule_id: r for r in store.client.get_bucket_lifecycle(store.bucket).rules}
        assert set(rules) == {"operator-logs", RULE_ID}
        assert rules[RULE_ID].rule_filter.prefix == layout.STAGING and rules[RULE_ID].expiration.days == 3
        assert rules["operator-logs"].expiration.days == 30
    finally:
        channel.close()
        service.stop(0)
