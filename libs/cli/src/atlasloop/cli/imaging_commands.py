"""Offline imaging commands: convert, inspect, metrics."""

from __future__ import annotations

import argparse
import json

import numpy as np

from atlasloop.imaging import labels as schema
from atlasloop.imaging.errors import ImageError
from atlasloop.imaging.io import read_ct, save_nifti_atomic
from atlasloop.imaging.metrics import organ_metrics
from atlasloop.imaging.volume import Volume, load_nifti

# Class maps a label file may come in; a TotalSegmentator map keeps the classes the project's schema
# holds and drops the rest.
CLASS_MAPS = {
    "atlas": None,
    "totalsegmentator": schema.TOTALSEGMENTATOR_V2_ALL,
}


def register(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser("convert", help="DICOM folder or zip, or NIfTI, to canonical NIfTI")
    convert.add_argument("input")
    convert.add_argument("output", help="OUTPUT.nii.gz")
    convert.set_defaults(run=run_convert)

    inspect = commands.add_parser("inspect", help="geometry, HU range, label census with organ volumes")
    inspect.add_argument("file")
    inspect.add_argument("--labels", action="store_true", help="treat the file as a label map")
    inspect.add_argument(
        "--class-map",
        choices=sorted(CLASS_MAPS),
        default="atlas",
        help="ids of the label map (implies --labels for totalsegmentator)",
    )
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(run=run_inspect)

    metrics = commands.add_parser("metrics", help="per-organ Dice, NSD, HD95, volumes of PRED against GT")
    metrics.add_argument("pred")
    metrics.add_argument("gt")
    metrics.add_argument("--tolerance-mm", type=float, default=2.0, help="NSD tolerance (default 2 mm)")
    metrics.add_argument("--json", action="store_true")
    metrics.set_defaults(run=run_metrics)


def run_convert(args: argparse.Namespace) -> int:
    volume = read_ct(args.input)
    save_nifti_atomic(volume, args.output)
    print(
        f"{args.output}: {'x'.join(map(str, volume.shape))} voxels, {volume.orientation}, "
        f"spacing {', '.join(f'{s:.3g}' for s in volume.spacing)} mm"
    )
    return 0


def _label_map(volume: Volume, class_map: str, source: str) -> np.ndarray:
    mapping = CLASS_MAPS[class_map]
    if mapping is not None:
        return schema.remap(volume.array, mapping, drop_unknown=True)
    return schema.validate_label_map(volume.array, source)


def describe(volume: Volume, path: str, as_labels: bool, class_map: str) -> dict:
    info: dict = {
        "file": path,
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 4) for s in volume.spacing],
        "orientation": volume.orientation,
        "dtype": str(volume.array.dtype),
        "affine": np.round(volume.affine, 4).tolist(),
    }
    if as_labels:
        counts = schema.census(_label_map(volume, class_map, path), volume.voxel_volume_ml)
        info["organs"] = {name: {"voxels": v, "ml": round(ml, 2)} for name, (v, ml) in counts.items()}
    else:
        info["hu_min"], info["hu_max"] = float(volume.array.min()), float(volume.array.max())
    return info


def run_inspect(args: argparse.Namespace) -> int:
    volume = read_ct(args.file)
    as_labels = args.labels or args.class_map != "atlas"
    info = describe(volume, args.file, as_labels, args.class_map)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}")
    print(f"  shape        {' x '.join(map(str, info['shape']))}  ({info['dtype']})")
    print(f"  spacing      {' x '.join(f'{s:g}' for s in info['spacing_mm'])} mm")
    print(f"  orientation  {info['orientation']}")
    if as_labels:
        print("  organ            voxels        mL")
        for name, row in info["organs"].items():
            print(f"  {name:<14} {row['voxels']:>8,} {row['ml']:>9.1f}")
    else:
        print(f"  HU range     {info['hu_min']:g} .. {info['hu_max']:g}")
    return 0


def run_metrics(args: argparse.Namespace) -> int:
    pred, truth = load_nifti(args.pred), load_nifti(args.gt)
    if pred.shape != truth.shape or not np.allclose(pred.affine, truth.affine, atol=1e-3):
        raise ImageError(args.pred, f"grid {pred.shape} does not match the ground truth's {truth.shape}")
    rows = organ_metrics(
        schema.validate_label_map(pred.array, args.pred),
        schema.validate_label_map(truth.array, args.gt),
        truth.spacing,
        args.tolerance_mm,
    )
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    print(f"organ            Dice   NSD@{args.tolerance_mm:g}mm   HD95 mm   pred mL   truth mL")
    for r in rows:
        print(f"{r.organ:<14} {r.dice:6.3f} {r.nsd:9.3f} {r.hd95_mm:9.1f} {r.pred_ml:9.1f} {r.truth_ml:10.1f}")
    return 0
