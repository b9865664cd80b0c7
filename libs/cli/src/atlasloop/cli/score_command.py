"""``atlasloop score CASES_DIR``: attention maps and priorities on the published scripts' layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from atlasloop.method.case_scoring import score_case
from atlasloop.method.published_layout import case_folders, read_case, write_case, write_priority


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("score", help="attention maps and priority.csv for cases in the reference layout")
    parser.add_argument("cases_dir", type=Path)
    parser.add_argument("--mode", choices=["reference", "improved"], default="reference")
    parser.add_argument("--out", type=Path, help="write here instead of into the case folders")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    folders = case_folders(args.cases_dir)
    out_root = args.out or args.cases_dir
    results = []
    for folder in tqdm(folders, unit="case", desc=f"score ({args.mode})", disable=None):
        output = read_case(folder)
        result = score_case(folder.name, output, args.mode)
        target = out_root / folder.name
        if args.out:
            target.mkdir(parents=True, exist_ok=True)
        write_case(target, output, result)
        results.append(result)
    out_root.mkdir(parents=True, exist_ok=True)
    write_priority(out_root / "priority.csv", results)
    print(f"{len(results)} cases scored ({args.mode}); ranking in {out_root / 'priority.csv'}")
    return 0
