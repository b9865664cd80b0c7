"""Dead letters from a terminal: ``atlasloop dead-letters`` lists the events a consumer gave up on
(after its bounded retries), ``atlasloop dead-letters replay ID`` publishes one again (admin)."""

from __future__ import annotations

import argparse

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import listing, print_json
from atlasloop.client import Client
from atlasloop.tracking.v1 import tracking_pb2

NONE_WAITING = "no dead letters: every event was handled"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("dead-letters", help="events a consumer gave up on, and replaying them (admin)")
    parser.add_argument("action", nargs="?", choices=["list", "replay"], default="list")
    parser.add_argument("id", nargs="?", default="", help="the letter to replay (<partition>-<offset>)")
    parser.add_argument("--all", action="store_true", help="also the letters already replayed")
    parser.add_argument("--json", action="store_true", help="print JSON instead of columns")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "replay" and not args.id:
        raise SystemExit("atlasloop dead-letters replay needs the letter's id (see 'atlasloop dead-letters')")
    client = client_from_args(args)
    try:
        return replay(args, client) if args.action == "replay" else list_letters(args, client)
    finally:
        client.close()


def _row(letter: tracking_pb2.DeadLetter) -> dict[str, object]:
    return {
        "id": letter.id,
        "topic": letter.topic,
        "key": letter.key,
        "group": letter.consumer_group,
        "attempts": letter.attempts,
        "failed_at": letter.failed_at,
        "reason": letter.reason,
        "replayed_by": letter.replayed_by,
    }


def list_letters(args: argparse.Namespace, client: Client) -> int:
    reply = client.tracking.ListDeadLetters(
        tracking_pb2.ListDeadLettersRequest(include_replayed=args.all),
        metadata=client.auth("admin"),
        timeout=client.timeout_s,
    )
    return listing([_row(letter) for letter in reply.letters], args.json, NONE_WAITING)


def replay(args: argparse.Namespace, client: Client) -> int:
    reply = client.tracking.ReplayDeadLetter(
        tracking_pb2.ReplayDeadLetterRequest(id=args.id), metadata=client.auth("admin"), timeout=client.timeout_s
    )
    if args.json:
        print_json(_row(reply.letter))
    else:
        print(f"replayed {reply.letter.id} to {reply.letter.topic} (event {reply.letter.event_id})")
    return 0
