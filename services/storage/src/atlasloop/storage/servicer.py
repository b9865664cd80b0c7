"""gRPC adapter of the storage service: protobuf in, :class:`StorageCore` calls, protobuf out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from atlasloop.common.auth import current_principal
from atlasloop.common.case_grants import check_case_read
from atlasloop.common.domain import CaseFormat, LabelSource, Role, VolumeKind
from atlasloop.common.errors import InvalidInput, PermissionDenied
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging import labels
from atlasloop.storage.case_meta import object_ref
from atlasloop.storage.catalog import CaseFilter
from atlasloop.storage.core import StorageCore
from atlasloop.storage.importer import ImportRequest
from atlasloop.storage.staging import UploadHeader
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

DOWNLOADABLE = (VolumeKind.CT, VolumeKind.LABEL, VolumeKind.DICOM_SEG)


def _expiry(seconds: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return stamp


def _sees_patient() -> bool:
    """Patient identifiers (where the deployment keeps them) go to admins only: annotators and
    services work on the images, not on who they are of."""
    return Role.ADMIN in current_principal().roles


def _kind(value: int) -> VolumeKind:
    kind = VolumeKind.from_proto(value)
    if kind not in DOWNLOADABLE:
        raise InvalidInput("kind must be VOLUME_KIND_CT, VOLUME_KIND_LABEL or VOLUME_KIND_DICOM_SEG")
    return kind


class StorageServiceServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, core: StorageCore) -> None:
        self._core = core
        self._bucket = core.store.bucket

    def UploadVolume(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("the first message of an upload must be its header")
        header = UploadHeader(first.header.file_name, first.header.size_bytes, first.header.sha256.lower())

        def chunks() -> Iterator[bytes]:
            for message in request_iterator:
                if message.WhichOneof("part") != "data":
                    raise InvalidInput("after the header, an upload carries only data messages")
                yield message.data

        staged = self._core.upload(header, chunks())
        return storage_pb2.UploadVolumeResponse(upload_id=staged.upload_id, object=object_ref(staged.object))

    def ImportCase(self, request, context):
        case_format = CaseFormat.from_proto(request.format) if request.format else ""  # "": from the file name
        result = self._core.import_case(
            ImportRequest(
                upload_id=request.upload_id,
                format=case_format,
                case_id=request.case_id,
                label_upload_id=request.label_upload_id,
                allow_duplicate=request.allow_duplicate,
                source=request.source,
            ),
            current_principal(),
        )
        return storage_pb2.ImportCaseResponse(
            case_id=result.case.case_id,
            duplicate=result.duplicate,
            info=result.case.to_proto(self._bucket, _sees_patient()),
        )

    def _check_seg_reader(self, case_id: str, kind: VolumeKind) -> None:
        """A SEG carries the patient identifiers the deployment keeps (a PACS files it under the
        patient by them): then, like the identifiers themselves, it goes to admins only."""
        if kind == VolumeKind.DICOM_SEG and not _sees_patient():
            dicom = self._core.catalog.get(case_id).dicom or {}
            if dicom.get("patient"):
                raise PermissionDenied("this case's DICOM SEG carries patient identifiers: admins only")

    def DownloadVolume(self, request, context):
        check_case_read(request.case_id)
        kind = _kind(request.kind)
        self._check_seg_reader(request.case_id, kind)
        parts = self._core.download(
            request.case_id, kind, request.label_version, request.chunk_bytes, request.display_copy
        )
        for part, value in parts:
            if part == "header":
                yield storage_pb2.DownloadVolumeResponse(
                    header=common_pb2.ObjectRef(
                        bucket=self._bucket, key=value.key, sha256=value.sha256, size_bytes=value.size_bytes
                    )
                )
            elif part == "data":
                yield storage_pb2.DownloadVolumeResponse(data=value)
            else:
                yield storage_pb2.DownloadVolumeResponse(sha256=value)

    def GetCase(self, request, context):
        check_case_read(request.case_id)
        return storage_pb2.GetCaseResponse(
            info=self._core.get_case(request.case_id).to_proto(self._bucket, _sees_patient())
        )

    def GetLabelSchema(self, request, context):
        schema = labels.SCHEMA
        return storage_pb2.GetLabelSchemaResponse(
            name=schema.name,
            fingerprint=schema.fingerprint,
            structures=[
                storage_pb2.LabelStructure(
                    id=s.id,
                    name=s.name,
                    color=list(s.color),
                    volume_ml=list(s.volume_ml or ()),
                    optional=s.optional,
                    vessel=s.vessel,
                    aliases=list(s.aliases),
                )
                for s in schema.structures
            ],
            json=json.dumps(schema.to_dict(), indent=2),
        )

    def AnnounceCase(self, request, context):
        return storage_pb2.AnnounceCaseResponse(info=self._core.announce(request.case_id).to_proto(self._bucket))

    def ListCases(self, request, context):
        keep = CaseFilter(dict(request.acquisition), request.study_instance_uid, request.series_instance_uid)
        records, token = self._core.list_cases(request.page_size, request.page_token, keep)
        with_patient = _sees_patient()
        return storage_pb2.ListCasesResponse(
            cases=[r.to_proto(self._bucket, with_patient) for r in records], next_page_token=token
        )

    def WriteLabelVersion(self, request, context):
        record = self._core.write_label_version(
            request.case_id,
            request.upload_id,
            LabelSource.from_proto(request.source) if request.source else None,  # None: the caller's kind
            request.parent_version,
            request.model_set,
            request.round,
            current_principal(),
        )
        return storage_pb2.WriteLabelVersionResponse(version=record.to_proto(self._bucket))

    def ListLabelVersions(self, request, context):
        check_case_read(request.case_id)
        records = self._core.list_label_versions(request.case_id)
        return storage_pb2.ListLabelVersionsResponse(versions=[r.to_proto(self._bucket) for r in records])

    def PresignDownload(self, request, context):
        check_case_read(request.case_id)
        kind = _kind(request.kind)
        self._check_seg_reader(request.case_id, kind)
        url, seconds = self._core.presign_download(request.case_id, kind, request.label_version, request.expires_s)
        return storage_pb2.PresignDownloadResponse(url=url, expires_at=_expiry(seconds))

    def PresignUpload(self, request, context):
        upload_id, url, fields, limit, seconds = self._core.presign_upload(
            request.file_name, request.expires_s, request.max_bytes
        )
        return storage_pb2.PresignUploadResponse(
            url=url, upload_id=upload_id, expires_at=_expiry(seconds), fields=fields, max_bytes=limit
        )
