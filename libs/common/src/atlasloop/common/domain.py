"""Domain enums and their proto converters, written once.

Each enum's values are the lower-case names of a proto enum's values without the enum's prefix
(``CASE_STATE_SCORED`` <-> ``CaseState.SCORED == "scored"``), which is also how they are stored in
the database, in JSON records and on the command line. ``from_proto`` refuses UNSPECIFIED (unless
the RPC documents a default) and numbers the proto does not define, as INVALID_ARGUMENT; an enum
that misses a proto value, or has one the proto lacks, fails at import, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Self, TypeVar

from atlasloop.common.errors import InvalidInput
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.labels import ORGAN_IDS, ORGANS, SCHEMA
from atlasloop.rendering.v1 import rendering_pb2
from atlasloop.scoring.v1 import scoring_pb2
from atlasloop.storage.v1 import storage_pb2
from atlasloop.tracking.v1 import tracking_pb2
from atlasloop.training.v1 import training_pb2

_BINDINGS: dict[type, tuple[Any, str]] = {}
E = TypeVar("E", bound="ProtoEnum")


class ProtoEnum(StrEnum):
    """A StrEnum bound to a proto enum by :func:`_bound`."""

    @classmethod
    def from_proto(cls, value: int, default: Self | None = None) -> Self:
        proto, prefix = _BINDINGS[cls]
        if value == 0:
            if default is not None:
                return default
            raise InvalidInput(f"{_label(cls)} is unspecified; give one of: {', '.join(cls)}")
        try:
            name: str = proto.Name(value)
        except ValueError:
            raise InvalidInput(f"{value} is not a valid {_label(cls)}; give one of: {', '.join(cls)}") from None
        return cls(name.removeprefix(prefix).lower())

    @classmethod
    def parse(cls, text: str) -> Self:
        """From its name (command line, JSON); case-insensitive."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise InvalidInput(f"{text[:40]!r} is not a valid {_label(cls)}; give one of: {', '.join(cls)}") from None

    @classmethod
    def has(cls, value: object) -> bool:
        """``value`` is one of the names (a JSON value may be anything: a list would not even hash)."""
        return isinstance(value, str) and value in cls._value2member_map_

    def to_proto(self) -> Any:
        """The value of the bound proto enum (typed ``Any``: each enum binds a different class)."""
        proto, prefix = _BINDINGS[type(self)]
        return proto.Value(prefix + self.value.upper())


def _label(cls: type) -> str:
    return "".join(f" {c.lower()}" if c.isupper() else c for c in cls.__name__).strip()


def _bound(proto: Any, prefix: str) -> Callable[[type[E]], type[E]]:
    def bind(cls: type[E]) -> type[E]:
        names = {n.removeprefix(prefix).lower() for n in proto.keys() if n != f"{prefix}UNSPECIFIED"}  # noqa: SIM118
        mine = {member.value for member in cls}
        if names != mine:
            raise TypeError(f"{cls.__name__} differs from its proto enum: {sorted(names ^ mine)}")
        _BINDINGS[cls] = (proto, prefix)
        return cls

    return bind


@_bound(common_pb2.CaseState, "CASE_STATE_")
class CaseState(ProtoEnum):
    INGESTED = "ingested"
    PREDICTED = "predicted"
    SCORED = "scored"
    QUEUED = "queued"
    LEASED = "leased"
    REVISED = "revised"
    APPROVED = "approved"


@_bound(common_pb2.LabelSource, "LABEL_SOURCE_")
class LabelSource(ProtoEnum):
    ORIGINAL = "original"
    AI = "ai"
    HUMAN = "human"


@_bound(common_pb2.ErrorTag, "ERROR_TAG_")
class ErrorTag(ProtoEnum):
    MISSED_REGION = "missed_region"
    LEAKAGE = "leakage"
    ORGAN_CONFUSION = "organ_confusion"
    LATERALITY_SWAP = "laterality_swap"
    FRAGMENT = "fragment"
    MISSING_ORGAN = "missing_organ"
    HALLUCINATED_ORGAN = "hallucinated_organ"
    BOUNDARY = "boundary"
    EXTENT_PROTOCOL = "extent_protocol"
    ANNOTATOR_MISS = "annotator_miss"
    ANNOTATOR_INCONSISTENCY = "annotator_inconsistency"
    ANNOTATOR_SLIP = "annotator_slip"


@_bound(common_pb2.VolumeKind, "VOLUME_KIND_")
class VolumeKind(ProtoEnum):
    CT = "ct"
    LABEL = "label"
    ATTENTION = "attention"
    DICOM_SEG = "dicom_seg"


@_bound(common_pb2.Role, "ROLE_")
class Role(ProtoEnum):
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    SERVICE = "service"


@_bound(storage_pb2.CaseFormat, "CASE_FORMAT_")
class CaseFormat(ProtoEnum):
    NIFTI = "nifti"
    DICOM_ZIP = "dicom_zip"
    ABDOMENATLAS_ZIP = "abdomenatlas_zip"


@_bound(scoring_pb2.ScoringMode, "SCORING_MODE_")
class ScoringMode(ProtoEnum):
    REFERENCE = "reference"
    IMPROVED = "improved"


@_bound(scoring_pb2.Signal, "SIGNAL_")
class Signal(ProtoEnum):
    INCONSISTENCY = "inconsistency"
    UNCERTAINTY = "uncertainty"
    OVERLAP = "overlap"
    PLAUSIBILITY = "plausibility"


@_bound(rendering_pb2.Plane, "PLANE_")
class Plane(ProtoEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


@_bound(rendering_pb2.WindowPreset, "WINDOW_PRESET_")
class WindowPreset(ProtoEnum):
    ABDOMEN = "abdomen"
    LIVER = "liver"
    BONE = "bone"


@_bound(rendering_pb2.LabelStyle, "LABEL_STYLE_")
class LabelStyle(ProtoEnum):
    CONTOUR = "contour"
    FILL = "fill"


@_bound(tracking_pb2.ReviewVerdict, "REVIEW_VERDICT_")
class ReviewVerdict(ProtoEnum):
    APPROVE = "approve"
    REJECT = "reject"


@_bound(tracking_pb2.RegionVerdictKind, "REGION_VERDICT_KIND_")
class RegionVerdictKind(ProtoEnum):
    """What an annotator found in an attention region: an error, now fixed, or none."""

    FIXED = "fixed"
    NOT_AN_ERROR = "not_an_error"


@_bound(tracking_pb2.ReviewState, "REVIEW_STATE_")
class ReviewState(ProtoEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@_bound(training_pb2.RunState, "RUN_STATE_")
class RunState(ProtoEnum):
    QUEUED = "queued"
    RUNNING = "running"
    EVALUATING = "evaluating"
    PUBLISHED = "published"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (RunState.PUBLISHED, RunState.REJECTED, RunState.FAILED)


NO_ORGAN = 0  # an organ field left empty (background)


def organ_to_proto(name: str) -> int:
    """The value of a proto organ field for a structure name: its id in the project's schema."""
    return ORGAN_IDS[name]


def organ_from_proto(value: int, allow_unspecified: bool = False) -> str:
    """The structure name of a proto organ field's id; "" for 0 (none) only where that is allowed."""
    if value == NO_ORGAN and allow_unspecified:
        return ""
    if value not in ORGANS:
        raise InvalidInput(f"organ {value} is not a structure of the schema {SCHEMA.name} ({', '.join(ORGAN_IDS)})")
    return ORGANS[value]
