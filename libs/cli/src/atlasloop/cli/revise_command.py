"""``atlasloop revise LEASE_ID DIR_OR_FILE``: send a corrected label map back; ``atlasloop review``.

From a pulled folder, the organs changed are found by comparing the edited ``labels.nii.gz`` with
the version that was pulled, and the minutes since the pull are the time spent; both are shown
before submitting and can be given instead (``--organs``, ``--minutes``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from atlasloop.cli import workspace
from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.client import Client
from atlasloop.common.domain import CaseState, ErrorTag, organ_from_proto, organ_to_proto
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.labels import ORGAN_IDS, canonical_name, validate_label_map
from atlasloop.imaging.volume import Volume, load_nifti


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("revise", help="send a corrected label map back for a leased case")
    p.add_argument("lease_id")
    p.add_argument("labels", type=Path, metavar="DIR_OR_FILE", help="the pulled folder, or a label map (NIfTI)")
    p.add_argument("--organs", default="", help="comma-separated organs revised (default: those changed)")
    p.add_argument("--tag", action="append", default=[], help="organ:tag, for example liver:leakage (repeatable)")
    p.add_argument("--minutes", type=float, help="time spent (default: since the pull)")
    p.add_argument("--note", default="")
    p.add_argument("--json", action="store_true")
    add_client_arguments(p)
    p.set_defaults(run=run)
    r = commands.add_parser("review", help="approve or reject a revision")
    r.add_argument("revision_id")
    r.add_argument("verdict", choices=["approve", "reject"])
    r.add_argument("--reason", default="", help="why (needed to reject)")
    add_client_arguments(r)
    r.set_defaults(run=review)


def run(args: argparse.Namespace) -> int:
    folder = args.labels if args.labels.is_dir() else args.labels.parent
    labels_path = args.labels / workspace.LABELS if args.labels.is_dir() else args.labels
    pulled = workspace.read_manifest(folder)
    if pulled is not None and pulled.lease_id and pulled.lease_id != args.lease_id:
        raise SystemExit(f"atlasloop revise: {folder} was pulled for lease {pulled.lease_id}, not {args.lease_id}")
    if args.minutes is None and pulled is None:
        raise SystemExit("atlasloop revise: give --minutes (no pulled folder to measure the time from)")
    edited = load_nifti(labels_path)
    tags = [_tag(item) for item in args.tag]
    client = client_from_args(args)
    try:
        lease = client.get_lease(args.lease_id)
        if not lease.active:
            raise SystemExit(
                f"atlasloop revise: lease {args.lease_id} has ended (released, expired or already "
                "revised); take a case again with 'atlasloop next'"
            )
        organs = [canonical_name(o) for o in args.organs.split(",") if o.strip()] or _changed(
            client, lease.lease.case_id, lease.label_version, edited
        )
        if not organs:
            raise SystemExit(
                f"atlasloop revise: {labels_path} does not differ from label version "
                f"{lease.label_version}; nothing to revise (give --organs to submit it anyway)"
            )
        minutes = args.minutes if args.minutes is not None else pulled.minutes_since_pull()  # type: ignore[union-attr]
        print(
            f"case {lease.lease.case_id}: revising {', '.join(organs)}; {minutes:.1f} min"
            + ("" if args.minutes is not None else " since the pull")
        )
        reply = client.submit_revision(
            args.lease_id, edited, [organ_to_proto(o) for o in organs], tags, minutes * 60, args.note
        )
    finally:
        client.close()
    suggested = [f"{organ_from_proto(t.organ)}:{ErrorTag.from_proto(t.tag).value}" for t in reply.suggested_tags]
    result = {
        "revision_id": reply.revision_id,
        "label_version": reply.label_version,
        "organs": organs,
        "minutes": round(minutes, 2),
        "suggested_tags": suggested,
        "changed_ml": {organ_from_proto(d.organ): round(d.ml_added + d.ml_removed, 2) for d in reply.diffs},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"revision {reply.revision_id} stored as label version {reply.label_version}")
    print("suggested tags: " + (", ".join(suggested) or "none"))
    print(f"a reviewer approves it with: atlasloop review {reply.revision_id} approve")
    return 0


def _changed(client: Client, case_id: str, version: str, edited: Volume) -> list[str]:
    """Organs whose voxels differ between ``version`` and the edited map, in schema order."""
    with tempfile.TemporaryDirectory(prefix="atlasloop-revise-") as tmp:
        before = load_nifti(client.download(case_id, Path(tmp) / "before.nii.gz", version))
    if before.shape != edited.shape or not np.allclose(before.affine, edited.affine, atol=1e-3):
        raise SystemExit(f"atlasloop revise: the edited map's grid {edited.shape} is not the case's {before.shape}")
    after = validate_label_map(edited.array)
    return [organ for organ, label in ORGAN_IDS.items() if not np.array_equal(before.array == label, after == label)]


def _tag(item: str) -> common_pb2.OrganErrorTag:
    organ, _, tag = item.partition(":")
    return common_pb2.OrganErrorTag(organ=organ_to_proto(canonical_name(organ)), tag=ErrorTag.parse(tag).to_proto())


def review(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    try:
        reply = client.review(args.revision_id, approve=args.verdict == "approve", reason=args.reason)
    finally:
        client.close()
    print(f"revision {args.revision_id}: case is {CaseState.from_proto(reply.state).value}")
    return 0
