"""One gRPC client of every AtlasLoop service, the way a viewer or a script drives the system.

Each call carries the bearer token of the role it needs (annotator, reviewer, admin); the
``atlasloop`` command, the simulated annotator and the demo all go through this class, so they
exercise the same public API a viewer would.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc

from atlasloop.common import case_grants
from atlasloop.common.service_map import SERVICES
from atlasloop.common.tls import ClientTls, open_channel
from atlasloop.common.tracing import traced_channel
from atlasloop.common.transfer import download_volume, stream_volume, upload_file
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging import display_copy
from atlasloop.imaging.schema import LabelSchema, schema_from_dict
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti
from atlasloop.inference.v1 import inference_pb2_grpc
from atlasloop.rendering.v1 import rendering_pb2, rendering_pb2_grpc
from atlasloop.scoring.v1 import scoring_pb2, scoring_pb2_grpc
from atlasloop.storage.v1 import storage_pb2, storage_pb2_grpc
from atlasloop.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from atlasloop.training.v1 import training_pb2, training_pb2_grpc

MAX_MESSAGE = 16 * 1024 * 1024


def channel_options() -> list[tuple[str, int]]:
    """Message size limits every client channel uses (a rendered contact sheet runs to megabytes)."""
    return [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]


class Client:
    """``targets``: service name -> host:port; ``tokens``: role -> bearer token; ``tls``: how to
    reach services that serve TLS (plaintext when None)."""

    def __init__(
        self,
        targets: Mapping[str, str],
        tokens: Mapping[str, str],
        timeout_s: float = 300,
        tls: ClientTls | None = None,
    ) -> None:
        def channel(name: str) -> grpc.Channel:
            return open_channel(targets[name], tls, channel_options())

        self.channels = {name: channel(name) for name in SERVICES}
        storage, inference, scoring, rendering, tracking, training = (
            traced_channel(self.channels[n]) for n in SERVICES
        )
        self.storage = storage_pb2_grpc.StorageServiceStub(storage)
        self.inference = inference_pb2_grpc.InferenceServiceStub(inference)
        self.scoring = scoring_pb2_grpc.ScoringServiceStub(scoring)
        self.rendering = rendering_pb2_grpc.RenderingServiceStub(rendering)
        self.tracking = tracking_pb2_grpc.TrackingServiceStub(tracking)
        self.training = training_pb2_grpc.TrainingServiceStub(training)
        self.targets = dict(targets)
        self._tokens = dict(tokens)
        self.timeout_s = timeout_s
        self._grants: dict[str, tuple[str, float]] = {}  # case id -> (grant, when to ask again)

    def auth(self, role: str) -> list[tuple[str, str]]:
        """Call metadata carrying the bearer token of ``role``."""
        return [("authorization", f"Bearer {self._tokens[role]}")]

    def case_auth(self, role: str, case_id: str) -> list[tuple[str, str]]:
        """Call metadata for reading ``case_id`` as ``role``. An annotator reads only the cases they
        lease or have revised, showing a grant from tracking (``atlasloop.common.case_grants``),
        asked for once and again a minute before it runs out."""
        meta = self.auth(role)
        if role != "annotator":
            return meta
        grant, renew_at = self._grants.get(case_id, ("", 0.0))
        if time.time() >= renew_at:
            reply = self.tracking.GrantCase(
                tracking_pb2.GrantCaseRequest(case_id=case_id), metadata=meta, timeout=self.timeout_s
            )
            grant = reply.case_grant
            self._grants[case_id] = (grant, reply.expires_at.ToSeconds() - 60.0)
        return [*meta, (case_grants.HEADER, grant)]

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    # ---- cases and volumes ----

    def import_case(self, ct: Path, case_id: str, labels: Path | None = None, source: str = "") -> str:
        meta = self.auth("admin")
        label_upload = upload_file(self.storage, labels, meta) if labels else ""
        reply = self.storage.ImportCase(
            storage_pb2.ImportCaseRequest(
                upload_id=upload_file(self.storage, ct, meta),
                case_id=case_id,
                label_upload_id=label_upload,
                source=source,
            ),
            metadata=meta,
            timeout=self.timeout_s,
        )
        return reply.info.case_id

    def case_info(self, case_id: str, role: str = "admin") -> storage_pb2.CaseInfo:
        """What storage keeps of a case (its geometry, source, DICOM identity)."""
        return self.storage.GetCase(
            storage_pb2.GetCaseRequest(case_id=case_id), metadata=self.case_auth(role, case_id), timeout=self.timeout_s
        ).info

    def label_schema(self, role: str = "annotator") -> LabelSchema:
        """The project's label schema as storage serves it, checked against its fingerprint."""
        reply = self.storage.GetLabelSchema(
            storage_pb2.GetLabelSchemaRequest(), metadata=self.auth(role), timeout=self.timeout_s
        )
        schema = schema_from_dict(json.loads(reply.json), "GetLabelSchema")
        if schema.fingerprint != reply.fingerprint:
            raise ValueError(f"label schema {reply.name!r}: its JSON does not match its fingerprint")
        return schema

    def label_versions(self, case_id: str, role: str = "annotator") -> list[storage_pb2.LabelVersionInfo]:
        return list(
            self.storage.ListLabelVersions(
                storage_pb2.ListLabelVersionsRequest(case_id=case_id),
                metadata=self.case_auth(role, case_id),
                timeout=self.timeout_s,
            ).versions
        )

    def download(self, case_id: str, dest: Path, label_version: str = "", role: str = "annotator") -> Path:
        """A case's CT (no ``label_version``) or one of its label versions into ``dest``, checksum verified."""
        kind = common_pb2.VOLUME_KIND_LABEL if label_version else common_pb2.VOLUME_KIND_CT
        dest.parent.mkdir(parents=True, exist_ok=True)
        meta = self.case_auth(role, case_id)
        download_volume(self.storage, case_id, dest, meta, kind=kind, label_version=label_version)
        return dest

    def export_dicom_seg(self, case_id: str, dest: Path, label_version: str = "", role: str = "admin") -> Path:
        """A label version (default: the newest) as DICOM SEG into ``dest``, checksum verified; for
        cases imported from DICOM."""
        if not label_version:
            versions = self.label_versions(case_id, role)
            if not versions:
                raise ValueError(f"case {case_id!r} has no label version")
            label_version = versions[-1].label_version
        dest.parent.mkdir(parents=True, exist_ok=True)
        meta = self.case_auth(role, case_id)
        download_volume(
            self.storage, case_id, dest, meta, kind=common_pb2.VOLUME_KIND_DICOM_SEG, label_version=label_version
        )
        return dest

    def viewer_files(self, case_id: str, out: Path, organs: list[int] | None = None) -> list[Path]:
        """The case's heatmaps on the CT grid and the colour tables, written into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        request = rendering_pb2.StreamViewerFilesRequest(case_id=case_id, organs=organs or [])
        written: dict[str, Path] = {}
        handles = {}
        try:
            for chunk in self.rendering.StreamViewerFiles(
                request, metadata=self.case_auth("annotator", case_id), timeout=self.timeout_s
            ):
                name = Path(chunk.file_name).name  # never a path the service chose
                if name not in handles:
                    written[name] = out / name
                    handles[name] = written[name].open("wb")
                handles[name].write(chunk.data)
                if chunk.end_of_file:
                    handles.pop(name).close()
        finally:
            for handle in handles.values():
                handle.close()
        return list(written.values())

    def labels(self, case_id: str, version: str, role: str = "annotator") -> Volume:
        with tempfile.TemporaryDirectory(prefix="atlasloop-client-") as tmp:
            path = Path(tmp) / "labels.nii.gz"
            meta = self.case_auth(role, case_id)
            download_volume(self.storage, case_id, path, meta, kind=common_pb2.VOLUME_KIND_LABEL, label_version=version)
            return load_nifti(path)

    def labels_for_display(self, case_id: str, version: str, role: str = "annotator") -> Volume:
        """A label version as a viewer needs it first: from storage's display-ready copy (Blosc2,
        decoded several times faster than the NIfTI), or from the NIfTI when storage holds none.
        The same voxels and affine either way."""
        meta = self.case_auth(role, case_id)
        request = storage_pb2.DownloadVolumeRequest(
            case_id=case_id, kind=common_pb2.VOLUME_KIND_LABEL, label_version=version, display_copy=True
        )
        chunks = stream_volume(self.storage, request, meta, self.timeout_s)
        try:  # decoded as it arrives; the checksum is checked at the end of the stream, before this returns
            return display_copy.decode_stream(chunks, f"display copy of {case_id}/{version}")
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
        return self.labels(case_id, version, role)

    # ---- scoring and the queue ----

    def propose_round(self, round_: int, max_cases: int) -> list[scoring_pb2.RankedCase]:
        return list(
            self.scoring.ProposeRound(
                scoring_pb2.ProposeRoundRequest(round=round_, max_cases=max_cases),
                metadata=self.auth("admin"),
                timeout=self.timeout_s,
            ).cases
        )

    def queue(self, round_: int, cases: list[scoring_pb2.RankedCase]) -> tracking_pb2.QueueCasesResponse:
        queued = [tracking_pb2.QueuedCase(case_id=c.case_id, priority=c.priority, organs=c.organs) for c in cases]
        return self.tracking.QueueCases(
            tracking_pb2.QueueCasesRequest(round=round_, cases=queued),
            metadata=self.auth("admin"),
            timeout=self.timeout_s,
        )

    def queueable(self, ranked: list[scoring_pb2.RankedCase]) -> list[scoring_pb2.RankedCase]:
        """Of a ranking, the cases waiting for a human (state SCORED): the scoring service ranks
        every scored output, including cases already revised or being predicted again."""
        waiting = {c.case_id for c in self.cases([common_pb2.CASE_STATE_SCORED])}
        return [c for c in ranked if c.case_id in waiting]

    def cases(
        self, states: list[common_pb2.CaseState] | None = None, role: str = "reviewer"
    ) -> list[tracking_pb2.CaseSummary]:
        found, token = [], ""
        while True:
            reply = self.tracking.ListCases(
                tracking_pb2.ListCasesRequest(states=states or [], page_size=500, page_token=token),
                metadata=self.auth(role),
                timeout=self.timeout_s,
            )
            found += reply.cases
            if not (token := reply.next_page_token):
                return found

    def get_lease(self, lease_id: str) -> tracking_pb2.GetLeaseResponse:
        return self.tracking.GetLease(
            tracking_pb2.GetLeaseRequest(lease_id=lease_id), metadata=self.auth("annotator"), timeout=self.timeout_s
        )

    def history(self, case_id: str) -> tracking_pb2.GetCaseResponse:
        return self.tracking.GetCase(
            tracking_pb2.GetCaseRequest(case_id=case_id), metadata=self.auth("reviewer"), timeout=self.timeout_s
        )

    def scores(self, case_id: str, model_set: str = "", role: str = "annotator") -> scoring_pb2.CaseScores:
        return self.scoring.GetCaseScores(
            scoring_pb2.GetCaseScoresRequest(case_id=case_id, model_set=model_set),
            metadata=self.case_auth(role, case_id),
            timeout=self.timeout_s,
        ).scores

    def score_external(self, case_id: str, labels: Path, model_set: str = "") -> scoring_pb2.ScoreExternalResponse:
        """An external label map (NIfTI file) scored against the case's ensemble, as a reviewer."""
        size = labels.stat().st_size
        if size > MAX_MESSAGE // 2:  # the service's own limit is lower still by default (8 MiB)
            raise ValueError(f"{labels}: {size:,} bytes is too large to score (compress it: .nii.gz)")
        return self.scoring.ScoreExternal(
            scoring_pb2.ScoreExternalRequest(case_id=case_id, model_set=model_set, label_map=labels.read_bytes()),
            metadata=self.auth("reviewer"),
            timeout=self.timeout_s,
        )

    def salient_slices(
        self, case_id: str, label_version: str, out: Path, count: int = 4, size_px: int = 0
    ) -> list[Path]:
        """The most salient slices with heatmap, region boxes and (given a label version) label
        contours, as PNG files (what a viewer shows first); ``size_px`` on the long side."""
        out.mkdir(parents=True, exist_ok=True)
        style = rendering_pb2.LABEL_STYLE_CONTOUR if label_version else rendering_pb2.LABEL_STYLE_UNSPECIFIED
        view = rendering_pb2.SliceView(
            case_id=case_id,
            label_version=label_version,
            region_boxes=True,
            label_style=style,
            min_size_px=size_px,
            max_size_px=size_px,
        )
        request = rendering_pb2.StreamSalientSlicesRequest(view=view, count=count)
        written = []
        for reply in self.rendering.StreamSalientSlices(
            request, metadata=self.case_auth("annotator", case_id), timeout=self.timeout_s
        ):
            path = out / f"{case_id}-slice{reply.index:03d}.png"
            path.write_bytes(reply.png)
            written.append(path)
        return written

    # ---- annotation ----

    def next_case(self) -> tracking_pb2.NextCaseResponse | None:
        """A lease on the next queued case; None when the queue is empty (an empty reply)."""
        reply = self.tracking.NextCase(
            tracking_pb2.NextCaseRequest(), metadata=self.auth("annotator"), timeout=self.timeout_s
        )
        if reply.case_grant:  # good for the grant lifetime (an hour by default); asked again after 5 min
            self._grants[reply.lease.case_id] = (reply.case_grant, time.time() + 300)
        return reply if reply.lease.case_id else None

    def submit_revision(
        self,
        lease_id: str,
        labels: Volume,
        organs: list[int],
        tags: list[common_pb2.OrganErrorTag],
        seconds: float,
        note: str = "",
        verdicts: list[tracking_pb2.RegionVerdict] | None = None,
    ) -> tracking_pb2.SubmitRevisionResponse:
        """``verdicts``: what the annotator found in each attention region they were shown."""
        meta = self.auth("annotator")
        with tempfile.TemporaryDirectory(prefix="atlasloop-client-") as tmp:
            upload_id = upload_file(self.storage, save_nifti(labels, Path(tmp) / "revised.nii.gz"), meta)
        return self.tracking.SubmitRevision(
            tracking_pb2.SubmitRevisionRequest(
                lease_id=lease_id,
                upload_id=upload_id,
                organs=organs,
                tags=tags,
                seconds_spent=seconds,
                note=note,
                region_verdicts=verdicts or [],
            ),
            metadata=meta,
            timeout=self.timeout_s,
        )

    def revisions(
        self, review_state: tracking_pb2.ReviewState = tracking_pb2.REVIEW_STATE_PENDING
    ) -> list[tracking_pb2.RevisionSummary]:
        """Revisions in ``review_state`` (all when unspecified), oldest first: a reviewer's worklist."""
        reply = self.tracking.ListRevisions(
            tracking_pb2.ListRevisionsRequest(review_state=review_state),
            metadata=self.auth("reviewer"),
            timeout=self.timeout_s,
        )
        return list(reply.revisions)

    def render_slice(self, view: rendering_pb2.SliceView, role: str = "annotator") -> rendering_pb2.RenderSliceResponse:
        """One slice of a case as a PNG, drawn as ``view`` says."""
        return self.rendering.RenderSlice(
            rendering_pb2.RenderSliceRequest(view=view),
            metadata=self.case_auth(role, view.case_id),
            timeout=self.timeout_s,
        )

    def review(self, revision_id: str, approve: bool, reason: str = "") -> tracking_pb2.SubmitReviewResponse:
        verdict = tracking_pb2.REVIEW_VERDICT_APPROVE if approve else tracking_pb2.REVIEW_VERDICT_REJECT
        return self.tracking.SubmitReview(
            tracking_pb2.SubmitReviewRequest(revision_id=revision_id, verdict=verdict, reason=reason),
            metadata=self.auth("reviewer"),
            timeout=self.timeout_s,
        )

    def statistics(self, role: str = "reviewer") -> tracking_pb2.GetStatisticsResponse:
        return self.tracking.GetStatistics(
            tracking_pb2.GetStatisticsRequest(), metadata=self.auth(role), timeout=self.timeout_s
        )

    # ---- training ----

    def start_run(
        self, reason: str, from_originals: bool = False, epochs: int = 0, learning_rate: float = 0.0
    ) -> training_pb2.Run:
        overrides = training_pb2.RecipeOverrides(epochs=epochs, learning_rate=learning_rate)
        request = training_pb2.StartRunRequest(reason=reason, from_originals=from_originals, overrides=overrides)
        return self.training.StartRun(request, metadata=self.auth("admin"), timeout=self.timeout_s).run

    def run(self, run_id: str) -> training_pb2.Run:
        return self.training.GetRun(
            training_pb2.GetRunRequest(run_id=run_id), metadata=self.auth("admin"), timeout=self.timeout_s
        ).run

    def runs(self, role: str = "admin") -> list[training_pb2.Run]:
        return list(
            self.training.ListRuns(
                training_pb2.ListRunsRequest(page_size=100), metadata=self.auth(role), timeout=self.timeout_s
            ).runs
        )

    def watch(self, run_id: str, timeout_s: float = 3600) -> Iterator[training_pb2.WatchRunResponse]:
        yield from self.training.WatchRun(
            training_pb2.WatchRunRequest(run_id=run_id), metadata=self.auth("admin"), timeout=timeout_s
        )
