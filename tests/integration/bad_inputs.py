"""The hostile inputs of the bad-input suite, as a table: what is sent to which service, and the
status and message it must be answered with. ``test_bad_input.py`` runs each against the real
services and checks that nothing was left behind; ``make bench`` prints how many there are.

A case is a function of the suite's environment (stubs, tokens, one valid case) that makes one
call expected to fail. Grouped by what is attacked: tokens, ids, files, fields, streams, events.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from atlasloop.common import case_grants
from atlasloop.common.v1 import common_pb2
from atlasloop.inference.v1 import inference_pb2
from atlasloop.rendering.v1 import rendering_pb2
from atlasloop.scoring.v1 import scoring_pb2
from atlasloop.storage.v1 import storage_pb2
from atlasloop.tracking.v1 import tracking_pb2
from atlasloop.training.v1 import training_pb2

C = grpc.StatusCode


@dataclass(frozen=True)
class BadInput:
    name: str
    service: str
    kind: str  # token | id | file | field | stream
    send: Callable[[Any], object]
    code: grpc.StatusCode
    says: str  # a fragment the status message must contain (case-insensitive)


CASES: list[BadInput] = []


def case(service: str, kind: str, code: grpc.StatusCode, says: str):
    def register(send: Callable[[Any], object]) -> Callable[[Any], object]:
        CASES.append(BadInput(send.__name__, service, kind, send, code, says))
        return send

    return register


def _upload(env, data: bytes, name: str = "x.nii.gz", size: int | None = None, sha: str | None = None) -> str:
    header = storage_pb2.UploadHeader(
        file_name=name,
        size_bytes=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest() if sha is None else sha,
    )
    parts = [storage_pb2.UploadVolumeRequest(header=header)]
    parts += [storage_pb2.UploadVolumeRequest(data=data[i : i + 65536]) for i in range(0, len(data), 65536)]
    return env.storage.UploadVolume(iter(parts), metadata=env.auth("admin")).upload_id


def _import(env, data: bytes, name: str = "x.nii.gz") -> object:
    upload_id = _upload(env, data, name)
    return env.storage.ImportCase(
        storage_pb2.ImportCaseRequest(upload_id=upload_id, case_id="bad-case"), metadata=env.auth("admin")
    )


def _write_label(env, nifti: bytes) -> object:
    """A label map written as the inference service writes AI labels (a caller allowed to)."""
    upload_id = _upload(env, gzip.compress(nifti))
    request = storage_pb2.WriteLabelVersionRequest(case_id=env.case_id, upload_id=upload_id, round=1)
    return env.storage.WriteLabelVersion(request, metadata=env.auth("inference"))


def _nifti_header(dims: tuple[int, ...], pixdim: tuple[float, ...], datatype: int = 4, bitpix: int = 16) -> bytes:
    """A NIfTI-1 header (348 bytes + 4 of extension flag) with the given grid and voxel type."""
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    dim = [len(dims), *dims] + [1] * (7 - len(dims))
    struct.pack_into("<8h", header, 40, *dim)
    struct.pack_into("<hh", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, *pixdim, *([1.0] * (7 - len(pixdim))))
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<hh", header, 252, 0, 1)  # qform_code 0, sform_code 1
    for row, offset in enumerate((280, 296, 312)):
        values = [0.0, 0.0, 0.0, 0.0]
        values[row] = pixdim[row] if row < len(pixdim) else 1.0
        struct.pack_into("<4f", header, offset, *values)
    header[344:348] = b"n+1\0"
    return bytes(header)


# ---- tokens ----


@case("storage", "token", C.UNAUTHENTICATED, "token")
def no_token(env):
    return env.storage.GetCase(storage_pb2.GetCaseRequest(case_id=env.case_id))


@case("storage", "token", C.UNAUTHENTICATED, "token")
def unknown_token(env):
    return env.storage.GetCase(storage_pb2.GetCaseRequest(case_id=env.case_id), metadata=env.bearer("nope"))


@case("tracking", "token", C.UNAUTHENTICATED, "bearer")
def not_a_bearer_header(env):
    return env.tracking.GetCase(
        tracking_pb2.GetCaseRequest(case_id=env.case_id), metadata=[("authorization", "Basic YWRtaW46YWRtaW4=")]
    )


@case("tracking", "token", C.UNAUTHENTICATED, "token")
def forged_jwt_in_dev_mode(env):
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJvcHMiLCJyb2xlcyI6WyJhZG1pbiJdfQ."
    return env.tracking.GetCase(tracking_pb2.GetCaseRequest(case_id=env.case_id), metadata=env.bearer(forged))


@case("storage", "token", C.PERMISSION_DENIED, "")
def annotator_imports(env):
    return env.storage.ImportCase(
        storage_pb2.ImportCaseRequest(upload_id="u", case_id="bad-case"), metadata=env.auth("annotator")
    )


@case("training", "token", C.PERMISSION_DENIED, "")
def annotator_starts_training(env):
    return env.training.StartRun(training_pb2.StartRunRequest(reason="me"), metadata=env.auth("annotator"))


# ---- ids (every service builds object keys from them) ----


@case("storage", "token", C.PERMISSION_DENIED, "lease or have revised")
def annotator_downloads_a_case_they_do_not_lease(env):
    request = storage_pb2.DownloadVolumeRequest(case_id=env.case_id, kind=common_pb2.VOLUME_KIND_CT)
    return list(env.storage.DownloadVolume(request, metadata=env.auth("annotator")))


@case("scoring", "token", C.PERMISSION_DENIED, "lease or have revised")
def annotator_reads_scores_of_a_case_they_do_not_lease(env):
    request = scoring_pb2.GetCaseScoresRequest(case_id=env.case_id)
    return env.scoring.GetCaseScores(request, metadata=env.auth("annotator"))


@case("rendering", "token", C.PERMISSION_DENIED, "lease or have revised")
def annotator_renders_a_case_with_a_forged_grant(env):
    forged = case_grants.issue(b"guessed key", "alice", env.case_id, 600)
    view = rendering_pb2.SliceView(case_id=env.case_id, plane=rendering_pb2.PLANE_AXIAL)
    metadata = [*env.auth("annotator"), (case_grants.HEADER, forged)]
    return env.rendering.RenderSlice(rendering_pb2.RenderSliceRequest(view=view), metadata=metadata)


@case("tracking", "token", C.PERMISSION_DENIED, "lease or have revised")
def annotator_reads_the_history_of_a_case_they_do_not_lease(env):
    return env.tracking.GetCase(tracking_pb2.GetCaseRequest(case_id=env.case_id), metadata=env.auth("annotator"))


@case("tracking", "token", C.PERMISSION_DENIED, "neither leases nor has revised")
def annotator_asks_a_grant_for_a_case_they_do_not_lease(env):
    return env.tracking.GrantCase(tracking_pb2.GrantCaseRequest(case_id=env.case_id), metadata=env.auth("annotator"))


@case("storage", "token", C.PERMISSION_DENIED, "")
def annotator_announces_a_case(env):  # only tracking's sweep (a service) or an admin may
    return env.storage.AnnounceCase(
        storage_pb2.AnnounceCaseRequest(case_id=env.case_id), metadata=env.auth("annotator")
    )


@case("tracking", "token", C.PERMISSION_DENIED, "")
def reviewer_runs_a_reconciliation(env):
    return env.tracking.Reconcile(tracking_pb2.ReconcileRequest(), metadata=env.auth("reviewer"))


@case("storage", "id", C.INVALID_ARGUMENT, "case id")
def announce_a_traversal_case_id(env):
    return env.storage.AnnounceCase(storage_pb2.AnnounceCaseRequest(case_id="../x"), metadata=env.auth("admin"))


@case("storage", "id", C.INVALID_ARGUMENT, "case id")
def traversal_case_id(env):
    return env.storage.GetCase(storage_pb2.GetCaseRequest(case_id="../../etc/passwd"), metadata=env.auth("admin"))


@case("storage", "id", C.INVALID_ARGUMENT, "case id")
def empty_case_id(env):
    return env.storage.GetCase(storage_pb2.GetCaseRequest(case_id=""), metadata=env.auth("admin"))


@case("storage", "id", C.INVALID_ARGUMENT, "case id")
def huge_case_id(env):
    return env.storage.GetCase(storage_pb2.GetCaseRequest(case_id="a" * 5000), metadata=env.auth("admin"))


@case("storage", "id", C.INVALID_ARGUMENT, "case id")
def import_with_traversal_case_id(env):
    return env.storage.ImportCase(
        storage_pb2.ImportCaseRequest(upload_id=env.upload_id, case_id="a/../../b"), metadata=env.auth("admin")
    )


@case("storage", "id", C.INVALID_ARGUMENT, "upload id")
def traversal_upload_id(env):
    return env.storage.ImportCase(
        storage_pb2.ImportCaseRequest(upload_id="../cases/x/meta.json", case_id="bad-case"), metadata=env.auth("admin")
    )


@case("storage", "id", C.INVALID_ARGUMENT, "label version")
def traversal_label_version_download(env):
    request = storage_pb2.DownloadVolumeRequest(
        case_id=env.case_id, kind=common_pb2.VOLUME_KIND_LABEL, label_version="../ct"
    )
    return list(env.storage.DownloadVolume(request, metadata=env.auth("admin")))


@case("storage", "id", C.NOT_FOUND, "")
def unknown_case(env):
    return env.storage.GetCase(storage_pb2.GetCaseRequest(case_id="no-such-case"), metadata=env.auth("admin"))


@case("scoring", "id", C.INVALID_ARGUMENT, "case id")
def scoring_traversal_case_id(env):
    return env.scoring.GetCaseScores(
        scoring_pb2.GetCaseScoresRequest(case_id="../x", model_set="ms"), metadata=env.auth("admin")
    )


@case("scoring", "id", C.INVALID_ARGUMENT, "model set")
def scoring_traversal_model_set(env):
    return env.scoring.GetCaseScores(
        scoring_pb2.GetCaseScoresRequest(case_id=env.case_id, model_set="../../models"), metadata=env.auth("admin")
    )


@case("rendering", "id", C.INVALID_ARGUMENT, "case id")
def rendering_traversal_case_id(env):
    view = rendering_pb2.SliceView(case_id="../../x", plane=rendering_pb2.PLANE_AXIAL)
    return env.rendering.RenderSlice(rendering_pb2.RenderSliceRequest(view=view), metadata=env.auth("admin"))


@case("rendering", "id", C.INVALID_ARGUMENT, "label version")
def rendering_traversal_label_version(env):
    view = rendering_pb2.SliceView(case_id=env.case_id, label_version="../../ct", plane=rendering_pb2.PLANE_AXIAL)
    return env.rendering.RenderSlice(rendering_pb2.RenderSliceRequest(view=view), metadata=env.auth("admin"))


@case("inference", "id", C.INVALID_ARGUMENT, "case id")
def inference_traversal_case_id(env):
    return list(env.inference.Predict(inference_pb2.PredictRequest(case_id="../x"), metadata=env.auth("service")))


@case("inference", "id", C.INVALID_ARGUMENT, "model set")
def inference_traversal_model_set(env):
    request = inference_pb2.PredictRequest(case_id=env.case_id, model_set="../../x")
    return list(env.inference.Predict(request, metadata=env.auth("service")))


@case("training", "id", C.INVALID_ARGUMENT, "run")
def training_traversal_run_id(env):
    return env.training.GetRun(training_pb2.GetRunRequest(run_id="../../ledger"), metadata=env.auth("admin"))


@case("training", "id", C.INVALID_ARGUMENT, "model set")
def training_rollback_traversal(env):
    return env.training.RollbackModelSet(
        training_pb2.RollbackModelSetRequest(model_set="../sets/x", reason="r"), metadata=env.auth("admin")
    )


@case("tracking", "id", C.INVALID_ARGUMENT, "revision_id")
def tracking_huge_revision_id(env):
    return env.tracking.GetRevision(tracking_pb2.GetRevisionRequest(revision_id="r" * 65), metadata=env.auth("admin"))


@case("tracking", "id", C.INVALID_ARGUMENT, "dead letter id")
def tracking_bad_dead_letter_id(env):
    return env.tracking.ReplayDeadLetter(tracking_pb2.ReplayDeadLetterRequest(id="0-1; rm"), metadata=env.auth("admin"))


# ---- files ----


@case("storage", "file", C.INVALID_ARGUMENT, "")
def text_named_nifti(env):
    return _import(env, b"hello, I am not an image" * 100)


@case("storage", "file", C.INVALID_ARGUMENT, "")
def truncated_gzip(env):
    return _import(env, gzip.compress(_nifti_header((64, 64, 64), (1.0, 1.0, 1.0)) + b"\0" * 1000)[:200])


@case("storage", "file", C.INVALID_ARGUMENT, "")
def header_claims_terabytes(env):
    return _import(env, gzip.compress(_nifti_header((30000, 30000, 30000), (1.0, 1.0, 1.0))))


@case("storage", "file", C.INVALID_ARGUMENT, "")
def decompression_bomb(env):
    dims = (1024, 1024, 400)  # 800 MB of zeros claimed, a few hundred kB sent
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as out:
        out.write(_nifti_header(dims, (1.0, 1.0, 1.0)))
        zeros = b"\0" * (1 << 20)
        for _ in range(200):
            out.write(zeros)
    return _import(env, raw.getvalue())


@case("storage", "file", C.INVALID_ARGUMENT, "voxel size")
def zero_voxel_spacing(env):
    body = _nifti_header((16, 16, 16), (0.0, 1.0, 1.0)) + b"\0" * (16 * 16 * 16 * 2)
    return _import(env, gzip.compress(body))


@case("storage", "file", C.INVALID_ARGUMENT, "")
def complex_voxel_type(env):
    body = _nifti_header((8, 8, 8), (1.0, 1.0, 1.0), datatype=32, bitpix=64) + b"\0" * (8 * 8 * 8 * 8)
    return _import(env, gzip.compress(body))


@case("storage", "file", C.INVALID_ARGUMENT, "")
def zip_with_traversal_member(env):
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("../../evil.dcm", b"x" * 200)
    return _import(env, raw.getvalue(), "case.zip")


@case("storage", "file", C.INVALID_ARGUMENT, "")
def zip_with_too_many_members(env):
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        for i in range(6000):
            archive.writestr(f"s/{i}.dcm", b"")
    return _import(env, raw.getvalue(), "case.zip")


@case("storage", "file", C.INVALID_ARGUMENT, "")
def label_map_off_the_grid(env):
    return _write_label(env, _nifti_header((8, 8, 8), (1.0, 1.0, 1.0), datatype=2, bitpix=8) + b"\0" * 512)


@case("storage", "file", C.INVALID_ARGUMENT, "")
def float_label_map(env):
    return _write_label(env, _nifti_header((8, 8, 8), (1.0, 1.0, 1.0), datatype=16, bitpix=32) + b"\0" * 2048)


# ---- fields and provenance ----


@case("storage", "field", C.PERMISSION_DENIED, "roles")
def annotator_writes_a_label(env):
    request = storage_pb2.WriteLabelVersionRequest(case_id=env.case_id, upload_id=env.upload_id, round=1)
    return env.storage.WriteLabelVersion(request, metadata=env.auth("annotator"))


@case("storage", "field", C.PERMISSION_DENIED, "original")
def service_claims_original(env):
    request = storage_pb2.WriteLabelVersionRequest(
        case_id=env.case_id, upload_id=env.upload_id, source=common_pb2.LABEL_SOURCE_ORIGINAL, round=1
    )
    return env.storage.WriteLabelVersion(request, metadata=env.auth("tracking"))


@case("storage", "field", C.PERMISSION_DENIED, "human")
def inference_claims_human(env):
    request = storage_pb2.WriteLabelVersionRequest(
        case_id=env.case_id, upload_id=env.upload_id, source=common_pb2.LABEL_SOURCE_HUMAN, round=1
    )
    return env.storage.WriteLabelVersion(request, metadata=env.auth("inference"))


@case("storage", "field", C.INVALID_ARGUMENT, "expires_s")
def presign_with_a_negative_lifetime(env):  # a year is capped to presign_max_s, not refused
    return env.storage.PresignUpload(
        storage_pb2.PresignUploadRequest(file_name="x.nii.gz", expires_s=-1), metadata=env.auth("admin")
    )


@case("storage", "field", C.INVALID_ARGUMENT, "max_bytes")
def presign_with_a_negative_size(env):
    return env.storage.PresignUpload(
        storage_pb2.PresignUploadRequest(file_name="x.nii.gz", max_bytes=-1), metadata=env.auth("admin")
    )


@case("tracking", "field", C.INVALID_ARGUMENT, "round")
def negative_round(env):
    queued = tracking_pb2.QueuedCase(case_id=env.case_id, priority=1.0)
    return env.tracking.QueueCases(tracking_pb2.QueueCasesRequest(round=-1, cases=[queued]), metadata=env.auth("admin"))


@case("tracking", "field", C.INVALID_ARGUMENT, "priority")
def nan_priority(env):
    queued = tracking_pb2.QueuedCase(case_id=env.case_id, priority=float("nan"))
    return env.tracking.QueueCases(tracking_pb2.QueueCasesRequest(round=1, cases=[queued]), metadata=env.auth("admin"))


@case("tracking", "field", C.INVALID_ARGUMENT, "seconds_spent")
def negative_time_spent(env):
    request = tracking_pb2.SubmitRevisionRequest(lease_id="l", upload_id="u", seconds_spent=-5)
    return env.tracking.SubmitRevision(request, metadata=env.auth("annotator"))


@case("tracking", "field", C.NOT_FOUND, "lease")
def unknown_lease(env):
    request = tracking_pb2.SubmitRevisionRequest(lease_id="no-such-lease", upload_id=env.upload_id, seconds_spent=5)
    return env.tracking.SubmitRevision(request, metadata=env.auth("annotator"))


@case("tracking", "field", C.NOT_FOUND, "revision")
def review_of_unknown_revision(env):
    request = tracking_pb2.SubmitReviewRequest(revision_id="nope", verdict=tracking_pb2.REVIEW_VERDICT_APPROVE)
    return env.tracking.SubmitReview(request, metadata=env.auth("reviewer"))


@case("tracking", "field", C.INVALID_ARGUMENT, "name")
def project_without_a_name(env):
    return env.tracking.CreateProject(tracking_pb2.CreateProjectRequest(name=""), metadata=env.auth("admin"))


@case("tracking", "field", C.INVALID_ARGUMENT, "name")
def project_with_a_novel_for_a_name(env):
    return env.tracking.CreateProject(tracking_pb2.CreateProjectRequest(name="n" * 100_000), metadata=env.auth("admin"))


@case("scoring", "field", C.INVALID_ARGUMENT, "")
def propose_negative_cases(env):
    return env.scoring.ProposeRound(
        scoring_pb2.ProposeRoundRequest(round=1, max_cases=-3, fraction=2.5), metadata=env.auth("admin")
    )


@case("rendering", "field", C.INVALID_ARGUMENT, "")
def render_a_giant_picture(env):
    view = rendering_pb2.SliceView(case_id=env.case_id, plane=rendering_pb2.PLANE_AXIAL, max_size_px=1_000_000)
    return env.rendering.RenderSlice(rendering_pb2.RenderSliceRequest(view=view), metadata=env.auth("admin"))


@case("rendering", "field", C.INVALID_ARGUMENT, "out of range")
def render_a_slice_past_the_end(env):
    view = rendering_pb2.SliceView(case_id=env.case_id, plane=rendering_pb2.PLANE_AXIAL, index=100_000)
    return env.rendering.RenderSlice(rendering_pb2.RenderSliceRequest(view=view), metadata=env.auth("admin"))


@case("training", "field", C.INVALID_ARGUMENT, "epochs")
def a_million_epochs(env):
    request = training_pb2.StartRunRequest(reason="r", overrides=training_pb2.RecipeOverrides(epochs=1_000_000))
    return env.training.StartRun(request, metadata=env.auth("admin"))


@case("training", "field", C.INVALID_ARGUMENT, "learning_rate")
def nan_learning_rate(env):
    request = training_pb2.StartRunRequest(
        reason="r", overrides=training_pb2.RecipeOverrides(learning_rate=float("nan"))
    )
    return env.training.StartRun(request, metadata=env.auth("admin"))


# ---- streams ----


@case("storage", "stream", C.RESOURCE_EXHAUSTED, "declared")
def upload_longer_than_declared(env):
    return _upload(env, b"x" * 5000, size=100)


@case("storage", "stream", C.INVALID_ARGUMENT, "sha")
def upload_with_the_wrong_checksum(env):
    return _upload(env, b"x" * 5000, sha="0" * 64)


@case("storage", "stream", C.INVALID_ARGUMENT, "header")
def upload_without_a_header(env):
    parts = iter([storage_pb2.UploadVolumeRequest(data=b"x" * 100)])
    return env.storage.UploadVolume(parts, metadata=env.auth("admin"))


@case("storage", "stream", C.INVALID_ARGUMENT, "size")
def upload_declaring_a_negative_size(env):
    return _upload(env, b"x" * 10, size=-1)


@case("storage", "stream", C.RESOURCE_EXHAUSTED, "")
def upload_declaring_a_petabyte(env):
    return _upload(env, b"x" * 10, size=1 << 50)


def count_by(attribute: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for bad in CASES:
        key = getattr(bad, attribute)
        counts[key] = counts.get(key, 0) + 1
    return counts
