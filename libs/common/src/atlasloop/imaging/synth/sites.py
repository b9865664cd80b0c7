"""Acquisition profiles. Sites differ the way real scanners and protocols do, so a model trained
on some fails on others in recognisable ways: non-contrast scans hide the pancreas and blur the
liver/spleen boundary, arterial scans light up the aorta and kidney cortex, a narrow field of view
cuts the body at the sides, heavy noise and thick slices blur small organs."""

from __future__ import annotations

from dataclasses import dataclass

# Mean HU of each tissue by contrast phase (literature values, rounded).
PHASE_HU: dict[str, dict[str, float]] = {
    "non_contrast": {
        "liver": 58,
        "spleen": 48,
        "kidney": 32,
        "pancreas": 42,
        "stomach": 25,
        "gall_bladder": 8,
        "vessel": 42,
        "bowel": 28,
        "muscle": 48,
        "fat": -100,
        "bone": 450,
        "marrow": 180,
    },
    "arterial": {
        "liver": 72,
        "spleen": 125,
        "kidney": 185,
        "pancreas": 115,
        "stomach": 40,
        "gall_bladder": 8,
        "vessel": 310,
        "bowel": 45,
        "muscle": 55,
        "fat": -100,
        "bone": 460,
        "marrow": 190,
    },
    "portal": {
        "liver": 112,
        "spleen": 118,
        "kidney": 165,
        "pancreas": 92,
        "stomach": 45,
        "gall_bladder": 10,
        "vessel": 165,
        "bowel": 55,
        "muscle": 58,
        "fat": -100,
        "bone": 460,
        "marrow": 190,
    },
}


@dataclass(frozen=True)
class Site:
    """One scanner/protocol: how its scans look."""

    name: str
    phase: str
    noise_hu: float
    gain: float  # intensity calibration: stored = gain * HU + offset
    offset_hu: float
    fov_mm: float  # in-plane field of view (square); smaller than the body cuts it at the sides
    slice_mm: float  # slice spacing
    orientation: str  # stored axis codes
    blur_mm: float  # partial-volume blur (Gaussian sigma)


SITES: dict[str, Site] = {
    "A": Site(
        "A", "portal", noise_hu=10, gain=1.00, offset_hu=0, fov_mm=380, slice_mm=3.0, orientation="RAS", blur_mm=1.0
    ),
    "B": Site(
        "B", "arterial", noise_hu=16, gain=1.03, offset_hu=-15, fov_mm=360, slice_mm=3.0, orientation="LPS", blur_mm=1.2
    ),
    "C": Site(
        "C",
        "non_contrast",
        noise_hu=24,
        gain=0.97,
        offset_hu=12,
        fov_mm=340,
        slice_mm=4.0,
        orientation="LPS",
        blur_mm=1.5,
    ),
    "D": Site(
        "D", "portal", noise_hu=14, gain=1.00, offset_hu=5, fov_mm=290, slice_mm=5.0, orientation="RAS", blur_mm=1.8
    ),
}
