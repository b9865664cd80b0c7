"""``atlasloop slices CASE``: the most salient slices with heatmap, label contours and region boxes,
as PNG files at a readable size (the long side ``--size`` pixels; labels stay sharp)."""

from __future__ import annotations

import argparse
from pathlib import Path

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import listing


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("slices", help="save the most salient slices of a case as PNG")
    p.add_argument("case_id")
    p.add_argument("--label-version", default="", help="labels to draw (default: none)")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--size", type=int, default=768, help="pixels on the long side (default 768)")
    p.add_argument("--out", type=Path, default=Path("slices"))
    p.add_argument("--json", action="store_true")
    add_client_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 64 <= args.size <= 2048:
        raise SystemExit("atlasloop slices: --size must be within 64..2048 pixels")
    client = client_from_args(args)
    try:
        written = client.salient_slices(args.case_id, args.label_version, args.out, args.count, size_px=args.size)
    finally:
        client.close()
    return listing(
        [{"file": str(p)} for p in written],
        args.json,
        f"case {args.case_id} has no salient slice (no attention anywhere)",
    )
