"""``atlasloop reconcile`` (admin): run tracking's reconciliation sweep with storage now and print
what it repaired (cases announced again) and what it found (tracked cases storage does not hold).
The sweep also runs by itself every ``ATLASLOOP_TRACKING_RECONCILE_INTERVAL_S``."""

from __future__ import annotations

import argparse

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import print_json
from atlasloop.tracking.v1 import tracking_pb2


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("reconcile", help="compare storage's cases with tracking's records and repair (admin)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    try:
        reply = client.tracking.Reconcile(
            tracking_pb2.ReconcileRequest(), metadata=client.auth("admin"), timeout=client.timeout_s
        )
    finally:
        client.close()
    found = {
        "storage_cases": reply.storage_cases,
        "announced_missing": list(reply.announced_missing),
        "announced_stuck": list(reply.announced_stuck),
        "orphans": list(reply.orphans),
        "deferred": reply.deferred,
    }
    if args.json:
        print_json(found)
        return 0
    print(f"storage holds {reply.storage_cases} cases")
    for key, what in (
        ("announced_missing", "unknown to tracking, announced again"),
        ("announced_stuck", "stuck before prediction, announced again"),
        ("orphans", "tracked but not in storage (left for an administrator)"),
    ):
        cases = found[key]
        assert isinstance(cases, list)
        print(f"{len(cases)} {what}" + (f": {', '.join(cases)}" if cases else ""))
    if reply.deferred:
        print(f"{reply.deferred} left for a later sweep (too recent, or over the sweep's limit)")
    return 0
