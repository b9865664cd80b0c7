"""A label map as a DICOM Segmentation (highdicom) that points back at the CT series it was drawn on.

One segment per organ of the label schema, numbered by the organ's label id, coded with SNOMED CT
(category Anatomical Structure). Frames where a segment is empty are left out (every slice is still
referenced), so a SEG holds one frame per organ per slice the organ is in, not one per organ per
slice of the scan (2,700 frames, 88 MB, for nine organs on a 512x512x300 CT, most of them empty).
Each frame references the source slice by SOP instance UID, from the identity the import kept
(:mod:`atlasloop.imaging.dicom_identity`); the source datasets highdicom needs are rebuilt from that
identity, with the patient and study attributes empty unless the deployment kept them. A label made
by the models is ``AUTOMATIC`` with the model set as the algorithm; a person's is ``MANUAL`` with the
annotator as content creator.

A label map lies on the grid of the stored CT, which an import from DICOM keeps in the series'
voxel order; a label map on a reoriented copy of that grid (a permutation and flips of the axes,
as a canonical RAS NIfTI) is accepted too. :func:`to_series_grid` maps it onto the series' grid
exactly, refusing any other grid, and :func:`read_seg` maps back, so a SEG decodes to the label map
voxel for voxel.

SOP instance and series UIDs are derived from the case and label version (``2.25`` UUID form), and
the content date from the label's creation, so building the SEG twice gives the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import CTImageStorage

from atlasloop.imaging.dicom import stack_affine
from atlasloop.imaging.dicom_identity import SeriesIdentity, derived_uid
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.labels import ORGAN_IDS, ORGANS, canonical_name
from atlasloop.imaging.volume import Volume

ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
ORGAN_CODES = {
    "spleen": Code("78961009", "SCT", "Spleen"),
    "kidney_right": Code("9846003", "SCT", "Right kidney"),
    "kidney_left": Code("18639004", "SCT", "Left kidney"),
    "gall_bladder": Code("28231008", "SCT", "Gallbladder"),
    "liver": Code("10200004", "SCT", "Liver"),
    "stomach": Code("69695003", "SCT", "Stomach"),
    "aorta": Code("15825003", "SCT", "Aorta"),
    "postcava": Code("64131007", "SCT", "Inferior vena cava"),
    "pancreas": Code("15776009", "SCT", "Pancreas"),
    # AbdomenAtlas 1.1's further structures, where SNOMED CT has one concept for them.
    "bladder": Code("89837001", "SCT", "Urinary bladder"),
    "colon": Code("71854001", "SCT", "Colon"),
    "duodenum": Code("38848004", "SCT", "Duodenum"),
    "esophagus": Code("32849002", "SCT", "Esophagus"),
    "intestine": Code("30315005", "SCT", "Small intestine"),
    "lung_left": Code("44029006", "SCT", "Left lung"),
    "lung_right": Code("3341006", "SCT", "Right lung"),
    "prostate": Code("41216001", "SCT", "Prostate"),
    "rectum": Code("34402009", "SCT", "Rectum"),
}
SOFTWARE = "AtlasLoop"


@dataclass(frozen=True)
class SegProvenance:
    """Who made the label: the models (``automatic``, ``author`` = the model set) or a person."""

    case_id: str
    label_version: str
    automatic: bool
    author: str
    created_at: datetime


def series_affine(identity: SeriesIdentity) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The series' voxel grid (RAS affine, shape (columns, rows, slices)), as the reader stacks it."""
    if not identity.instances or len(identity.orientation) != 6 or not identity.rows:
        raise ImageError(identity.series_instance_uid or "series", "the case keeps no DICOM geometry")
    positions = np.array([i.position_lps for i in identity.instances])
    single = len(positions) == 1  # only then does the thickness place the slice
    thickness = float(identity.acquisition.get("slice_thickness_mm") or 1.0) if single else 0.0
    affine = stack_affine(np.array(identity.orientation), identity.pixel_spacing, positions, thickness)
    return affine, (identity.columns, identity.rows, len(positions))


def _axis_map(
    from_affine: np.ndarray, to_affine: np.ndarray, from_shape: tuple[int, ...], to_shape: tuple[int, ...]
) -> tuple[list[int], list[bool]]:
    """How the axes of grid ``to`` lie in grid ``from``: per ``to`` axis, the ``from`` axis and
    whether it runs backwards. Refuses grids that are not one reorientation of the other."""
    m = np.linalg.inv(from_affine) @ to_affine  # to-index -> from-index
    rot, offset = m[:3, :3], m[:3, 3]
    perm, flips = [], []
    for a in range(3):
        b = int(np.argmax(np.abs(rot[:, a])))
        sign = float(np.sign(rot[b, a]))
        expected = 0.0 if sign > 0 else from_shape[b] - 1.0
        if (
            not np.allclose(np.abs(rot[:, a]), np.eye(3)[b], atol=1e-3)
            or abs(offset[b] - expected) > 1e-2
            or from_shape[b] != to_shape[a]
        ):
            raise ImageError("labels", "the label map's grid is not the DICOM series' grid reoriented")
        perm.append(b)
        flips.append(sign < 0)
    return perm, flips


def to_series_grid(labels: Volume, identity: SeriesIdentity) -> np.ndarray:
    """The label array on the series' grid (columns, rows, slices)."""
    affine, shape = series_affine(identity)
    perm, flips = _axis_map(labels.affine, affine, labels.shape, shape)
    out = np.transpose(labels.array, perm)
    for axis, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis)
    return np.ascontiguousarray(out)


def from_series_grid(array: np.ndarray, identity: SeriesIdentity, like: Volume) -> Volume:
    """The inverse of :func:`to_series_grid`: an array on the series' grid placed on ``like``'s."""
    affine, shape = series_affine(identity)
    perm, flips = _axis_map(like.affine, affine, like.shape, shape)
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
    return Volume(np.ascontiguousarray(np.transpose(array, np.argsort(perm))), like.affine)


def _source_images(identity: SeriesIdentity) -> list[Dataset]:
    """Header-only datasets of the source slices, as much as the SEG copies and references."""
    images = []
    patient = identity.patient
    for number, instance in enumerate(identity.instances, start=1):
        ds = Dataset()
        ds.SOPClassUID = identity.sop_class_uid or CTImageStorage
        ds.SOPInstanceUID = instance.sop_instance_uid
        ds.StudyInstanceUID = identity.study_instance_uid
        ds.SeriesInstanceUID = identity.series_instance_uid
        ds.FrameOfReferenceUID = identity.frame_of_reference_uid
        ds.Modality = identity.acquisition.get("modality", "CT")
        ds.PatientName = patient.get("patient_name", "")
        ds.PatientID = patient.get("patient_id", "")
        ds.PatientBirthDate = patient.get("birth_date", "")
        ds.PatientSex = patient.get("sex", "")
        ds.StudyDate = patient.get("study_date", "")
        ds.StudyTime = patient.get("study_time", "")
        ds.StudyID = patient.get("study_id", "")
        ds.AccessionNumber = patient.get("accession_number", "")
        ds.ReferringPhysicianName = patient.get("referring_physician", "")
        ds.InstanceNumber = number
        ds.ImageOrientationPatient = list(identity.orientation)
        ds.ImagePositionPatient = list(instance.position_lps)
        ds.PixelSpacing = list(identity.pixel_spacing)
        ds.SliceThickness = identity.acquisition.get("slice_thickness_mm", "")
        ds.Rows, ds.Columns = identity.rows, identity.columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        images.append(ds)
    return images


def write_seg(labels: Volume, identity: SeriesIdentity, provenance: SegProvenance) -> bytes:
    """The label map as DICOM SEG bytes referencing ``identity``'s instances."""
    if any(not i.sop_instance_uid for i in identity.instances):
        raise ImageError("series", "slices without a SOP instance UID cannot be referenced")
    on_series = to_series_grid(labels, identity)
    frames = np.ascontiguousarray(np.transpose(on_series, (2, 1, 0))).astype(np.uint8)  # (slice, row, column)
    # Segment numbers run 1..N in id order (DICOM's rule), whatever gaps the schema's ids have;
    # each segment is named by its structure, which is what read_seg maps back from.
    structures = sorted(ORGANS.items())
    number_of = np.zeros(256, np.uint8)
    for number, (label, _organ) in enumerate(structures, start=1):
        number_of[label] = number
    frames = number_of[frames]
    if provenance.automatic:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algorithm = hd.AlgorithmIdentificationSequence(
            name="AtlasLoop ensemble",
            version=provenance.author,
            family=Code("123109", "DCM", "Artificial Intelligence"),
        )
    else:
        algorithm_type, algorithm = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=organ,
            segmented_property_category=ANATOMICAL_STRUCTURE,
            # A structure without a concept of its own is an anatomical structure named by its label.
            segmented_property_type=ORGAN_CODES.get(organ, ANATOMICAL_STRUCTURE),
            algorithm_type=algorithm_type,
            algorithm_identification=algorithm,
            tracking_uid=derived_uid(provenance.case_id, provenance.label_version, organ, "tracking"),
            tracking_id=f"{provenance.case_id}/{organ}",
        )
        for number, (_label, organ) in enumerate(structures, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=_source_images(identity),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=derived_uid(provenance.case_id, provenance.label_version, "series"),
        series_number=1,
        sop_instance_uid=derived_uid(provenance.case_id, provenance.label_version, "instance"),
        instance_number=1,
        manufacturer=SOFTWARE,
        manufacturer_model_name="AtlasLoop",
        software_versions=SOFTWARE,
        device_serial_number="0",
        content_label="ORGANS",
        content_description=f"label version {provenance.label_version}"[:64],
        content_creator_name=None if provenance.automatic else _person(provenance.author),
        series_description=("AI" if provenance.automatic else "Revised") + " organ segmentation",
        omit_empty_frames=True,
    )
    _pin(seg, provenance)
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _person(identity: str) -> str:
    """An annotator's identity as a DICOM person name: one family-name component."""
    name = identity.replace("^", " ").replace("=", " ")[:63]
    return f"{name}^"


def _pin(seg: Dataset, provenance: SegProvenance) -> None:
    """Replace what highdicom draws from the clock and a random source by values of the label, so
    that the same label version always gives the same bytes."""
    stamp = provenance.created_at
    for keyword in ("Content", "Series", "InstanceCreation"):
        setattr(seg, f"{keyword}Date", stamp.strftime("%Y%m%d"))
        setattr(seg, f"{keyword}Time", stamp.strftime("%H%M%S"))
    for item in seg.get("ContributingEquipmentSequence", []):
        item.ContributionDateTime = stamp.strftime("%Y%m%d%H%M%S")
    organization = derived_uid(provenance.case_id, provenance.label_version, "dimensions")
    for sequence in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(sequence, []):
            item.DimensionOrganizationUID = organization


def read_seg(data: bytes, identity: SeriesIdentity, like: Volume) -> Volume:
    """Decode a SEG written for ``identity`` back to a label map on ``like``'s grid."""
    seg = hd.seg.segread(io.BytesIO(data))
    uids = [i.sop_instance_uid for i in identity.instances]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, relabel=False, skip_overlap_checks=False
    )  # (slice, row, column), the segment number per pixel
    label_of = np.zeros(max((int(item.SegmentNumber) for item in seg.SegmentSequence), default=0) + 1, np.uint8)
    for item in seg.SegmentSequence:  # segments are named by structure; numbers are the file's own
        try:
            label_of[int(item.SegmentNumber)] = ORGAN_IDS[canonical_name(str(item.SegmentLabel))]
        except ImageError:
            raise ImageError(
                "SEG", f"segment {item.SegmentLabel!r} is not a structure of the project's schema"
            ) from None
    on_series = np.transpose(label_of[np.asarray(pixels)], (2, 1, 0)).astype(np.uint8)
    return from_series_grid(on_series, identity, like)


def parse(data: bytes) -> Dataset:
    """The SEG as a pydicom dataset (for checks and viewers' needs)."""
    return pydicom.dcmread(io.BytesIO(data))
