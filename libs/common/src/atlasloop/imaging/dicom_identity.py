"""What a DICOM series is, kept beside the voxels: its UIDs, each slice's instance, how it was acquired.

A label can point back at the images it was drawn on (a DICOM SEG references the source series
instance by instance) only if the import keeps the study, series and frame-of-reference UIDs and
each slice's SOP instance UID with its position. ``instances`` is in the series' slice order
(increasing position along the slice normal, the order :mod:`atlasloop.imaging.dicom` stacks
them in, which the stored CT keeps); each keeps its ImagePositionPatient (LPS, mm), so a slice of
a reoriented copy still finds its instance by position.

The acquisition tags are the ones the loop balances rounds and reports by (scanner, kVp, kernel,
slice thickness, contrast). Patient and visit identifiers (names, ids, dates, institution) are
read into ``patient`` only so that a caller can decide; :meth:`SeriesIdentity.as_json` leaves
them out unless asked to keep them.

:meth:`SeriesIdentity.deidentified` applies DICOM PS3.15's basic confidentiality profile to what is
kept: patient and visit identifiers and the series description removed, every UID replaced by
``2.25.<HMAC-SHA256 of the UID under a deployment key>``, so the same source UID always maps to the
same new one (a study imported in two series stays one study; a later import of the same study
lines up) while nobody without the key can map back. The acquisition tags are technical values the
loop balances by and are kept; burned-in text in the pixels is out of its reach.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pydicom

# JSON name -> DICOM keyword; the value is kept as text, absent tags are left out.
ACQUISITION_TAGS = {
    "modality": "Modality",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "kvp": "KVP",
    "kernel": "ConvolutionKernel",
    "slice_thickness_mm": "SliceThickness",
    "contrast_agent": "ContrastBolusAgent",
    "contrast_route": "ContrastBolusRoute",
    "contrast_phase": "ContrastBolusAgentPhase",
    "body_part": "BodyPartExamined",
    "series_description": "SeriesDescription",
}
# Identifiers of the patient and the visit: the attributes of DICOM PS3.15's basic profile that
# this system could otherwise carry along.
PATIENT_TAGS = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "birth_date": "PatientBirthDate",
    "sex": "PatientSex",
    "age": "PatientAge",
    "accession_number": "AccessionNumber",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "study_id": "StudyID",
    "institution": "InstitutionName",
    "referring_physician": "ReferringPhysicianName",
}
# Acquisition tags the basic profile removes: free text that may name the patient or the site.
DEIDENTIFY_DROPS = frozenset({"series_description"})
MAX_TAG_CHARS = 256  # a tag longer than this is not an acquisition detail: cut, to bound meta.json


@dataclass(frozen=True)
class Instance:
    """One slice: its SOP instance UID and ImagePositionPatient (LPS, mm)."""

    sop_instance_uid: str
    position_lps: tuple[float, float, float]


@dataclass(frozen=True)
class SeriesIdentity:
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    instances: tuple[Instance, ...]
    acquisition: dict[str, str] = field(default_factory=dict)
    patient: dict[str, str] = field(default_factory=dict)
    # the slices' plane: ImageOrientationPatient (row then column direction, LPS), PixelSpacing
    # (between rows, between columns, mm), Rows, Columns
    orientation: tuple[float, ...] = ()
    pixel_spacing: tuple[float, float] = (0.0, 0.0)
    rows: int = 0
    columns: int = 0

    def as_json(self, keep_patient: bool = False) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "sop_class_uid": self.sop_class_uid,
            "instances": [
                {"sop_instance_uid": i.sop_instance_uid, "position_lps": list(i.position_lps)} for i in self.instances
            ],
            "acquisition": dict(self.acquisition),
            "patient": dict(self.patient) if keep_patient else {},
            "orientation": list(self.orientation),
            "pixel_spacing": list(self.pixel_spacing),
            "rows": self.rows,
            "columns": self.columns,
        }

    def deidentified(self, key: bytes) -> SeriesIdentity:
        """This identity under the basic confidentiality profile, UIDs remapped consistently by ``key``."""
        if len(key) < 16:
            raise ValueError("the de-identification key must be at least 16 bytes")
        return replace(
            self,
            study_instance_uid=remap_uid(self.study_instance_uid, key),
            series_instance_uid=remap_uid(self.series_instance_uid, key),
            frame_of_reference_uid=remap_uid(self.frame_of_reference_uid, key),
            instances=tuple(replace(i, sop_instance_uid=remap_uid(i.sop_instance_uid, key)) for i in self.instances),
            acquisition={k: v for k, v in self.acquisition.items() if k not in DEIDENTIFY_DROPS},
            patient={},
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesIdentity:
        return cls(
            data["study_instance_uid"],
            data["series_instance_uid"],
            data["frame_of_reference_uid"],
            data["sop_class_uid"],
            tuple(Instance(i["sop_instance_uid"], tuple(i["position_lps"])) for i in data["instances"]),
            dict(data.get("acquisition", {})),
            dict(data.get("patient", {})),
            tuple(float(v) for v in data.get("orientation", ())),
            (float(data.get("pixel_spacing", (0, 0))[0]), float(data.get("pixel_spacing", (0, 0))[1])),
            int(data.get("rows", 0)),
            int(data.get("columns", 0)),
        )


def derived_uid(*parts: str) -> str:
    """A UID that depends only on ``parts`` (``2.25`` UUID form): the same object gets the same UID
    every time it is written."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()[:16]
    return f"2.25.{uuid.UUID(bytes=digest).int}"


def remap_uid(uid: str, key: bytes) -> str:
    """A new UID for ``uid``: the same for the same key, ``2.25`` form (at most 44 characters)."""
    if not uid:
        return ""
    digest = hmac.new(key, uid.encode(), hashlib.sha256).digest()[:16]
    return f"2.25.{uuid.UUID(bytes=digest).int}"


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    text = "\\".join(str(v) for v in value) if isinstance(value, pydicom.multival.MultiValue) else str(value)
    return text.strip()[:MAX_TAG_CHARS] or None


def _tags(ds: pydicom.Dataset, wanted: dict[str, str]) -> dict[str, str]:
    found = {name: _text(ds, keyword) for name, keyword in wanted.items()}
    return {name: text for name, text in found.items() if text is not None}


def series_identity(ordered: Sequence[pydicom.Dataset]) -> SeriesIdentity:
    """The identity of a series from its slice headers, already in slice order."""
    first = ordered[0]
    return SeriesIdentity(
        study_instance_uid=_text(first, "StudyInstanceUID") or "",
        series_instance_uid=_text(first, "SeriesInstanceUID") or "",
        frame_of_reference_uid=_text(first, "FrameOfReferenceUID") or "",
        sop_class_uid=_text(first, "SOPClassUID") or "",
        instances=tuple(
            Instance(
                _text(ds, "SOPInstanceUID") or "",
                (
                    float(ds.ImagePositionPatient[0]),
                    float(ds.ImagePositionPatient[1]),
                    float(ds.ImagePositionPatient[2]),
                ),
            )
            for ds in ordered
        ),
        acquisition=_tags(first, ACQUISITION_TAGS),
        patient=_tags(first, PATIENT_TAGS),
        orientation=tuple(float(v) for v in first.ImageOrientationPatient),
        pixel_spacing=(float(first.PixelSpacing[0]), float(first.PixelSpacing[1])),
        rows=int(first.Rows),
        columns=int(first.Columns),
    )
