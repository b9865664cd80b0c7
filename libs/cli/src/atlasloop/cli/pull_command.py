"""``atlasloop pull LEASE_ID|CASE_ID --out DIR``: a case onto disk, ready for 3D Slicer.

With a lease (what ``atlasloop next`` printed), the label map to correct is the one the lease
starts from; with a case id, its current label version (to look at, not to revise). The layout of
the folder is ``atlasloop.cli.workspace``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from atlasloop.cli import workspace
from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.client import Client
from atlasloop.common.domain import Signal, organ_from_proto, organ_to_proto

LEASE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("pull", help="a leased (or any) case into a folder 3D Slicer opens")
    parser.add_argument("lease_or_case", metavar="LEASE_ID|CASE_ID")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (created; must be empty)")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"atlasloop pull: {args.out} is not empty; pull into a new folder")
    client = client_from_args(args)
    try:
        pulled = pull(client, args.lease_or_case, args.out)
    finally:
        client.close()
    written = sorted(p.name for p in args.out.iterdir())
    if args.json:
        print(
            json.dumps(
                {"folder": str(args.out), "files": written} | pulled.__dict__ | {"organs": list(pulled.organs)},
                indent=2,
            )
        )
    else:
        print(f"case {pulled.case_id} pulled into {args.out} ({len(written)} files)")
        print(f"open {args.out / workspace.SCENE} in 3D Slicer; correct {workspace.LABELS}, then:")
        print(
            f"  atlasloop revise {pulled.lease_id} {args.out}"
            if pulled.lease_id
            else "  (no lease: take the case with 'atlasloop next' to revise it)"
        )
    return 0


def pull(client: Client, lease_or_case: str, out: Path) -> workspace.Pulled:
    """Write every file of the folder; nothing is left behind when a step fails."""
    if LEASE_ID.match(lease_or_case):
        lease = client.get_lease(lease_or_case)
        if not lease.active:
            raise SystemExit(f"atlasloop pull: lease {lease_or_case} has ended; take a case with 'atlasloop next'")
        case_id, lease_id, label_version = lease.lease.case_id, lease.lease.lease_id, lease.label_version
        organs = [organ_from_proto(o) for o in lease.organs]
        summary = client.history(case_id).case
    else:
        case_id, lease_id, organs = lease_or_case, "", []
        summary = client.history(case_id).case
        label_version = summary.current_label_version
    ai_version = summary.ai_label_version or label_version
    if not label_version:
        raise SystemExit(f"atlasloop pull: case {case_id} has no label version yet; wait until it is predicted")
    staging = Path(tempfile.mkdtemp(prefix=".atlasloop-pull-", dir=out.parent if out.parent.exists() else None))
    try:
        client.download(case_id, staging / workspace.CT)
        client.download(case_id, staging / workspace.LABELS, label_version)
        client.download(case_id, staging / workspace.AI_LABELS, ai_version)
        ordered = [organ_to_proto(o) for o in organs]
        names = [p.name for p in client.viewer_files(case_id, staging, ordered or None)]
        heatmaps = workspace.heatmap_files(names)
        if organs:  # most salient first, as the lease lists them
            heatmaps.sort(key=lambda h: organs.index(h[0]) if h[0] in organs else len(organs))
        regions = client.scores(case_id).regions
        (staging / workspace.REGIONS).write_text(json.dumps([_region(r) for r in regions], indent=2))
        pulled = workspace.Pulled(
            case_id, lease_id, label_version, ai_version, tuple(organs), datetime.now(UTC).isoformat()
        )
        workspace.write_scene(staging, heatmaps)
        (staging / workspace.README).write_text(workspace.readme(pulled, heatmaps))
        workspace.write_manifest(staging, pulled)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
        return pulled
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _region(region) -> dict:
    box = MessageToDict(region.box, preserving_proto_field_name=True)
    return {
        "organ": organ_from_proto(region.organ),
        "min_mm": box.get("min_mm", []),
        "max_mm": box.get("max_mm", []),
        "volume_ml": round(region.volume_ml, 2),
        "peak_heat": round(region.peak_heat, 3),
        "mean_heat": round(region.mean_heat, 3),
        "signal": Signal.from_proto(region.dominant_signal).value if region.dominant_signal else "",
    }
