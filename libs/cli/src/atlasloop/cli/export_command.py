"""``atlasloop export dicom-seg CASE_ID [--label-version V] --out FILE.dcm``: a label version of a
case imported from DICOM as a DICOM Segmentation that references the source series, slice by slice,
for a PACS or any viewer that reads SEG."""

from __future__ import annotations

import argparse
from pathlib import Path

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import print_json


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="export a label version (dicom-seg: as DICOM SEG)")
    parser.add_argument("format", choices=["dicom-seg"], help="what to write")
    parser.add_argument("case_id")
    parser.add_argument("--label-version", default="", help="the label version (default: the newest)")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (FILE.dcm)")
    parser.add_argument("--role", default="admin", help="the identity to call as (default: admin)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    try:
        path = client.export_dicom_seg(args.case_id, args.out, args.label_version, role=args.role)
    finally:
        client.close()
    if args.json:
        print_json({"case_id": args.case_id, "out": str(path), "bytes": path.stat().st_size})
    else:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
