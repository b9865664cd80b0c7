"""``atlasloop release NAME --out DIR --format abdomenatlas|nnunet|msd|dicom-seg`` freezes a dataset
release (or takes the existing one of that name: releases never change) and writes it to DIR with
its manifest and changelog; ``atlasloop releases`` lists them. See :mod:`atlasloop.client.releases`."""

from __future__ import annotations

import argparse
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import print_json
from atlasloop.client.releases import write_release
from atlasloop.imaging.dataset_formats import FORMATS
from atlasloop.tracking.v1 import tracking_pb2


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("release", help="freeze a dataset release and write it in a dataset layout")
    parser.add_argument("name", help="the release's name (letters, digits, '.', '_', '-'); never reused")
    parser.add_argument("--out", type=Path, required=True, help="a new (or empty) folder to write it to")
    parser.add_argument("--format", choices=FORMATS, required=True, help="the layout to write")
    parser.add_argument("--project", default="", help="only this project's cases (default: every case)")
    parser.add_argument("--description", default="", help="what the release is, for its changelog")
    parser.add_argument(
        "--no-check", action="store_true", help="skip reading the written release back before it is put in place"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_client_arguments(parser)
    parser.set_defaults(run=run)

    listing = commands.add_parser("releases", help="list the dataset releases")
    listing.add_argument("--project", default="", help="only this project's releases")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_client_arguments(listing)
    listing.set_defaults(run=run_list)


def run(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    try:
        written = write_release(
            client, args.name, args.out, args.format, args.project, args.description, check=not args.no_check
        )
    finally:
        client.close()
    release = written.release
    if args.json:
        print_json(
            {
                "release": release.name,
                "created": written.created,
                "cases": release.case_count,
                "previous": release.previous,
                "unlabelled": written.unlabelled,
                "out": str(written.folder),
                "format": args.format,
            }
        )
        return 0
    what = "froze" if written.created else "wrote the existing"
    print(f"{what} release {release.name}: {release.case_count} cases -> {written.folder} ({args.format})")
    if written.unlabelled:
        print(f"left out {len(written.unlabelled)} cases without a label: {', '.join(written.unlabelled[:10])}")
    print(f"changes since {release.previous or 'nothing'}: see {written.folder / 'CHANGELOG.md'}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    try:
        reply = client.tracking.ListReleases(
            tracking_pb2.ListReleasesRequest(project_id=args.project),
            metadata=client.auth("admin"),
            timeout=client.timeout_s,
        )
    finally:
        client.close()
    if args.json:
        print_json([MessageToDict(r, preserving_proto_field_name=True) for r in reply.releases])
        return 0
    for r in reply.releases:
        print(f"{r.name}\t{r.case_count} cases\t{r.created_at.ToDatetime():%Y-%m-%d %H:%M}\tafter {r.previous or '-'}")
    return 0
