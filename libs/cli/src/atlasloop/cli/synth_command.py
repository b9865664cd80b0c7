"""``atlasloop synth``: a synthetic cohort in the AbdomenAtlas layout, with a preview picture."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

from atlasloop.imaging.layout import read_case
from atlasloop.imaging.synth.cohort import generate_cohort
from atlasloop.imaging.synth.preview import axial_overlay, contact_sheet
from atlasloop.imaging.synth.sites import SITES


def register(commands: argparse._SubParsersAction) -> None:
    synth = commands.add_parser("synth", help="generate a synthetic cohort with ground truth and site shift")
    synth.add_argument("--cases", type=int, required=True)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--sites", default=",".join(SITES), help=f"comma-separated, of {', '.join(SITES)}")
    synth.add_argument("--spacing", type=float, default=3.0, help="in-plane spacing in mm (default 3)")
    synth.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="body size relative to an adult, 0.2-1 (default 1); 0.5 = 8x fewer voxels",
    )
    synth.add_argument("--no-masks", action="store_true", help="skip segmentations/<organ>.nii.gz")
    synth.add_argument("--preview", type=Path, help="also write a PNG: one axial slice per site")
    synth.set_defaults(run=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    if args.cases < 1:
        raise SystemExit("atlasloop synth: --cases must be at least 1")
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    started = time.perf_counter()
    with tqdm(total=args.cases, unit="case", desc="synth", disable=None) as bar:
        entries = generate_cohort(
            args.out,
            args.cases,
            args.seed,
            sites,
            args.spacing,
            masks=not args.no_masks,
            scale=args.scale,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    print(f"{len(entries)} cases in {args.out} ({time.perf_counter() - started:.1f} s)")
    if args.preview:
        first: dict[str, str] = {}
        for entry in entries:
            first.setdefault(entry["site"], entry["case"])
        panels = []
        for site, name in first.items():
            case = read_case(args.out / name)
            assert case.labels is not None
            panels.append(
                (
                    f"site {site}: {SITES[site].phase}, noise {SITES[site].noise_hu:g} HU",
                    axial_overlay(case.ct, case.labels),
                )
            )
        contact_sheet(panels, args.preview)
        print(f"preview: {args.preview}")
    return 0
