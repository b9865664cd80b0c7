"""``atlasloop score-external CASE_ID FILE [--model-set S]``: a label map made elsewhere (a
TotalSegmentator or vendor output) scored against the case's ensemble as one more committee
member, organ by organ: Dice against the ensemble and its members, and what is wrong with it
(missing, volume, fragmented, laterality, contact, disagrees). Exit status 3 when any organ is
flagged, so a script can triage a folder of labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import print_json
from atlasloop.common.domain import organ_from_proto

FLAGGED = 3


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("score-external", help="score a label map made elsewhere against the ensemble")
    parser.add_argument("case_id")
    parser.add_argument("labels", type=Path, metavar="FILE", help="the label map (NIfTI) in the project's schema")
    parser.add_argument("--model-set", default="", help="the ensemble to compare with (default: the newest)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    try:
        reply = client.score_external(args.case_id, args.labels, args.model_set)
    finally:
        client.close()
    flagged = any(o.flags for o in reply.organs)
    if args.json:
        document = MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        for organ, message in zip(document["organs"], reply.organs, strict=True):
            organ["organ"] = organ_from_proto(message.organ)
        print_json(document)
        return FLAGGED if flagged else 0
    print(f"{args.labels} against ensemble {reply.model_set} (covers {reply.coverage:.0%} of its grid)")
    print(f"{'organ':<14}{'mL':>9}{'Dice ens.':>11}{'Dice members':>14}{'members agree':>15}  flags")
    for o in reply.organs:
        print(
            f"{organ_from_proto(o.organ):<14}{o.volume_ml:>9.1f}{o.dice_vs_ensemble:>11.3f}"
            f"{o.mean_dice_vs_members:>14.3f}{o.members_agreement:>15.3f}  {', '.join(o.flags) or '-'}"
        )
    return FLAGGED if flagged else 0
