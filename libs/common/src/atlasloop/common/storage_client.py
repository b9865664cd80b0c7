"""The storage service as the other services use it: list cases and label versions, read CTs and
label maps, write label versions. gRPC failures become the project's error types (NOT_FOUND and
INVALID_ARGUMENT keep their meaning; anything else is NotReady, a dependency problem)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf.message import Message

from atlasloop.common.errors import InvalidInput, NotFound, NotReady
from atlasloop.common.tls import ClientTls, open_channel
from atlasloop.common.tracing import traced_channel
from atlasloop.common.transfer import download_volume, upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.volume import Volume, load_nifti
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc

_CODES = {grpc.StatusCode.INVALID_ARGUMENT: InvalidInput, grpc.StatusCode.NOT_FOUND: NotFound}


class StorageClient:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self._channel = open_channel(target, tls, [("grpc.max_receive_message_length", 16 * 2**20)])
        self._stub = storage_pb2_grpc.StorageServiceStub(traced_channel(self._channel))
        self._metadata = [("authorization", f"Bearer {token}")]

    def _call(self, function: Callable[..., Any], request: Message) -> Any:
        try:
            return function(request, metadata=self._metadata, timeout=120)
        except grpc.RpcError as exc:
            raise _CODES.get(exc.code(), NotReady)(f"storage service: {exc.details()}") from None

    def write_human_version(
        self, case_id: str, upload_id: str, parent: str, round_: int
    ) -> storage_pb2.LabelVersionInfo:
        reply = self._call(
            self._stub.WriteLabelVersion,
            storage_pb2.WriteLabelVersionRequest(
                case_id=case_id,
                upload_id=upload_id,
                source=common_pb2.LABEL_SOURCE_HUMAN,
                parent_version=parent,
                round=round_,
            ),
        )
        return cast(storage_pb2.LabelVersionInfo, reply.version)

    def write_ai_version(self, case_id: str, labels: Path, model_set: str) -> str:
        """Upload a label map the ensemble made and store it as an AI label version."""
        try:
            upload_id = upload_file(self._stub, labels, self._metadata)
        except grpc.RpcError as exc:
            raise _CODES.get(exc.code(), NotReady)(f"storage service: {exc.details()}") from None
        reply = self._call(
            self._stub.WriteLabelVersion,
            storage_pb2.WriteLabelVersionRequest(
                case_id=case_id, upload_id=upload_id, source=common_pb2.LABEL_SOURCE_AI, model_set=model_set
            ),
        )
        return str(reply.version.label_version)

    def case_ids(self, page_size: int = 500) -> Iterator[str]:
        """Every case id, page by page."""
        for page in self.case_pages(page_size):
            yield from (case.case_id for case in page)

    def case_pages(self, page_size: int = 500) -> Iterator[list[storage_pb2.CaseInfo]]:
        """Every stored case, one page (at most the service's page size) at a time."""
        token = ""
        while True:
            reply = self._call(
                self._stub.ListCases, storage_pb2.ListCasesRequest(page_size=page_size, page_token=token)
            )
            yield list(reply.cases)
            if not (token := reply.next_page_token):
                return

    def get_case(self, case_id: str) -> storage_pb2.CaseInfo:
        """The stored case (NotFound when storage does not hold it)."""
        reply = self._call(self._stub.GetCase, storage_pb2.GetCaseRequest(case_id=case_id))
        return cast(storage_pb2.CaseInfo, reply.info)

    def announce(self, case_id: str) -> None:
        """Ask storage to publish ``case.ingested`` for the case again."""
        self._call(self._stub.AnnounceCase, storage_pb2.AnnounceCaseRequest(case_id=case_id))

    def label_versions(self, case_id: str) -> list[storage_pb2.LabelVersionInfo]:
        """A case's label versions, oldest first."""
        return list(
            self._call(self._stub.ListLabelVersions, storage_pb2.ListLabelVersionsRequest(case_id=case_id)).versions
        )

    def load_labels(self, case_id: str, version: str) -> Volume:
        return self._load(case_id, common_pb2.VOLUME_KIND_LABEL, version)

    def load_ct(self, case_id: str) -> Volume:
        return self._load(case_id, common_pb2.VOLUME_KIND_CT, "")

    def _load(self, case_id: str, kind: common_pb2.VolumeKind, version: str) -> Volume:
        with tempfile.TemporaryDirectory(prefix="atlasloop-storage-client-") as tmp:
            path = Path(tmp) / "volume.nii.gz"
            try:
                download_volume(self._stub, case_id, path, self._metadata, kind=kind, label_version=version)
            except grpc.RpcError as exc:
                raise _CODES.get(exc.code(), NotReady)(f"storage service: {exc.details()}") from None
            return load_nifti(path)

    def close(self) -> None:
        self._channel.close()
