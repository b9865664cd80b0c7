"""``atlasloop score CASES_DIR``: attention maps and priorities on the published scripts' layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from atlasloop.method.case_scoring import score_case
from atlasloop.method.improved import ImprovedConfig
from atlasloop.method.plausibility import read_volume_ranges
from atlasloop.method.published_layout import case_folders, read_case, write_case, write_priority


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("score", help="attention maps and priority.csv for cases in the reference layout")
    parser.add_argument("cases_dir", type=Path)
    parser.add_argument("--mode", choices=["reference", "improved"], default="reference")
    parser.add_argument("--out", type=Path, help="write here instead of into the case folders")
    parser.add_argument(
        "--volume-ranges",
        type=Path,
        metavar="JSON",
        help="the project's plausible organ volumes, {organ: [low_ml, high_ml]}, in place of the adult ranges",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = ImprovedConfig(volume_ranges_ml=read_volume_ranges(args.volume_ranges)) if args.volume_ranges else None
    folders = case_folders(args.cases_dir)
    out_root = args.out or args.cases_dir
    results = []
    for folder in tqdm(folders, unit="case", desc=f"score ({args.mode})", disable=None):
        output = read_case(folder)
        result = score_case(folder.name, output, args.mode, config)
        target = out_root / folder.name
        if args.out:
            target.mkdir(parents=True, exist_ok=True)
        write_case(target, output, result)
        results.append(result)
    out_root.mkdir(parents=True, exist_ok=True)
    write_priority(out_root / "priority.csv", results)
    print(f"{len(results)} cases scored ({args.mode}); ranking in {out_root / 'priority.csv'}")
    return 0
