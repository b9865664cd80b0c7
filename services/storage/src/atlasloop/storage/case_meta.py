"""What ``meta.json`` and a label version's ``.json`` hold, and how they turn into protobuf."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from atlasloop.common.domain import LabelSource
from atlasloop.common.objectstore import StoredObject
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.dicom_identity import SeriesIdentity
from atlasloop.imaging.volume import Volume
from atlasloop.storage.v1 import storage_pb2


@dataclass(frozen=True)
class Geometry:
    shape: list[int]
    spacing_mm: list[float]
    affine: list[float]  # 16 values, row-major
    orientation: str

    @classmethod
    def of(cls, volume: Volume) -> Geometry:
        return cls(
            list(volume.shape),
            [round(s, 6) for s in volume.spacing],
            [float(v) for v in volume.affine.ravel()],
            volume.orientation,
        )

    def matches(self, volume: Volume, atol_mm: float = 1e-3) -> bool:
        return list(volume.shape) == self.shape and np.allclose(
            volume.affine, np.asarray(self.affine).reshape(4, 4), atol=atol_mm
        )

    def to_proto(self) -> common_pb2.Geometry:
        return common_pb2.Geometry(
            shape=self.shape, spacing_mm=self.spacing_mm, affine=self.affine, orientation=self.orientation
        )


def content_sha256(volume: Volume) -> str:
    """Identity of a CT's content: voxel values and their placement, whatever the file format."""
    digest = hashlib.sha256()
    digest.update(np.asarray(volume.shape, dtype=np.int64).tobytes())
    digest.update(np.round(volume.affine, 3).astype(np.float64).tobytes())
    digest.update(str(volume.array.dtype).encode())
    digest.update(np.ascontiguousarray(volume.array).tobytes())
    return digest.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def timestamp(iso: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(iso))
    return stamp


def object_ref(stored: StoredObject) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(
        bucket=stored.bucket, key=stored.key, sha256=stored.sha256, size_bytes=stored.size_bytes
    )


@dataclass(frozen=True)
class CaseRecord:
    """The content of ``cases/<id>/meta.json``."""

    case_id: str
    geometry: Geometry
    hu_min: float
    hu_max: float
    source: str
    ct_key: str
    ct_sha256: str
    ct_size_bytes: int
    content_sha256: str
    original_label_version: str
    imported_by: str
    imported_at: str
    # W3C headers of the import's trace: work on the case that starts without a trace of its own
    # (the re-prediction sweep) continues the case's trace (``meta_trace_context``)
    trace_context: dict[str, str] = field(default_factory=dict)
    # atlasloop.imaging.dicom_identity.SeriesIdentity.as_json for a case imported from DICOM; its
    # patient part is empty unless the deployment keeps patient identifiers
    dicom: dict | None = None

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CaseRecord:
        return cls(**{**data, "geometry": Geometry(**data["geometry"])})

    def to_proto(self, bucket: str, with_patient: bool = False) -> storage_pb2.CaseInfo:
        """The case as an answer; patient identifiers (where kept) only ``with_patient``."""
        return storage_pb2.CaseInfo(
            case_id=self.case_id,
            geometry=self.geometry.to_proto(),
            hu_min=self.hu_min,
            hu_max=self.hu_max,
            source=self.source,
            ct=common_pb2.ObjectRef(
                bucket=bucket, key=self.ct_key, sha256=self.ct_sha256, size_bytes=self.ct_size_bytes
            ),
            imported_at=timestamp(self.imported_at),
            dicom=_dicom_proto(self.dicom, with_patient) if self.dicom else None,
        )


def _dicom_proto(dicom: dict, with_patient: bool) -> storage_pb2.DicomIdentity:
    identity = SeriesIdentity.from_json(dicom)
    return storage_pb2.DicomIdentity(
        study_instance_uid=identity.study_instance_uid,
        series_instance_uid=identity.series_instance_uid,
        frame_of_reference_uid=identity.frame_of_reference_uid,
        sop_class_uid=identity.sop_class_uid,
        instances=[
            storage_pb2.DicomInstance(sop_instance_uid=i.sop_instance_uid, position_lps=list(i.position_lps))
            for i in identity.instances
        ],
        acquisition=identity.acquisition,
        patient=identity.patient if with_patient else {},
        orientation=list(identity.orientation),
        pixel_spacing=list(identity.pixel_spacing),
        rows=identity.rows,
        columns=identity.columns,
    )


@dataclass(frozen=True)
class LabelRecord:
    """The content of ``cases/<id>/labels/<version>.json``: provenance of one label version."""

    case_id: str
    version: str
    source: str  # "original" | "ai" | "human"
    parent_version: str
    model_set: str
    round: int
    key: str
    sha256: str
    size_bytes: int
    author: str
    created_at: str
    organ_voxels: dict[str, int]

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> LabelRecord:
        return cls(**data)

    def to_proto(self, bucket: str) -> storage_pb2.LabelVersionInfo:
        return storage_pb2.LabelVersionInfo(
            case_id=self.case_id,
            label_version=self.version,
            source=LabelSource(self.source).to_proto(),
            parent_version=self.parent_version,
            model_set=self.model_set,
            round=self.round,
            object=common_pb2.ObjectRef(bucket=bucket, key=self.key, sha256=self.sha256, size_bytes=self.size_bytes),
            author=self.author,
            created_at=timestamp(self.created_at),
        )
