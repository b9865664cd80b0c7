"""The queue from a terminal: ``cases``, ``queue``, ``next``, ``stats`` and ``status``."""

from __future__ import annotations

import argparse
import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import listing, print_json
from atlasloop.client import Client
from atlasloop.common.domain import CaseState, LabelSource, organ_from_proto
from atlasloop.common.service_map import SERVICES
from atlasloop.inference.v1 import inference_pb2

NO_CASES = "no cases yet: import some with 'atlasloop import DIR'"
NO_QUEUE = (
    "no case is queued. Once cases are scored ('atlasloop cases --state scored'), queue a round: "
    "'atlasloop queue --round 1 --cases 10'"
)
NO_STATS = (
    "no revisions yet: lease a case ('atlasloop next'), pull it ('atlasloop pull LEASE --out DIR'), "
    "correct it and send it back ('atlasloop revise LEASE DIR')"
)


def register(commands: argparse._SubParsersAction) -> None:
    def add(name: str, help_: str, handler) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_)
        parser.add_argument("--json", action="store_true", help="print JSON instead of columns")
        add_client_arguments(parser)
        parser.set_defaults(run=lambda args: _with_client(args, handler))
        return parser

    p = add("cases", "cases with their state, priority, label source and model set", cases)
    p.add_argument("--state", action="append", default=[], choices=list(CaseState), help="only these (repeatable)")
    p = add("queue", "show the review queue; with --round, propose and queue a round first", queue)
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--cases", type=int, default=10, help="cases to queue with --round")
    add("next", "lease the next case of the queue", next_case)
    add("stats", "per-round, per-organ revision statistics", stats)
    add("status", "every service's health, address and the model set being served", status)


def _with_client(args: argparse.Namespace, handler) -> int:
    client = client_from_args(args)
    try:
        return int(handler(args, client))
    finally:
        client.close()


def cases(args: argparse.Namespace, client: Client) -> int:
    states = [CaseState(s).to_proto() for s in args.state]
    rows = [
        {
            "case": c.case_id,
            "state": CaseState.from_proto(c.state).value,
            "priority": round(c.priority, 1),
            "label": LabelSource.from_proto(c.current_label_source).value if c.current_label_source else "",
            "label_version": c.current_label_version,
            "model_set": c.model_set,
        }
        for c in client.cases(states)
    ]
    return listing(rows, args.json, NO_CASES if not states else f"no case is {' or '.join(args.state)}")


def queue(args: argparse.Namespace, client: Client) -> int:
    if args.round:
        proposed = client.queueable(client.propose_round(args.round, 10 * args.cases))[: args.cases]
        if not proposed:
            raise SystemExit("atlasloop queue: no scored case is waiting for a human; see 'atlasloop cases'")
        reply = client.queue(args.round, proposed)
        if not args.json:
            print(f"round {args.round}: queued {reply.queued}, already queued {reply.already_queued}")
    rows = [{"case": c.case_id, "priority": round(c.priority, 1)} for c in client.cases([CaseState.QUEUED.to_proto()])]
    return listing(sorted(rows, key=lambda r: -r["priority"]), args.json, NO_QUEUE)


def next_case(args: argparse.Namespace, client: Client) -> int:
    reply = client.next_case()
    if reply is None:
        raise SystemExit(f"atlasloop next: {NO_QUEUE}")
    organs = [organ_from_proto(o) for o in reply.organs]
    lease = {
        "lease_id": reply.lease.lease_id,
        "case_id": reply.lease.case_id,
        "label_version": reply.label_version,
        "organs": organs,
        "double_read": reply.double_read,
        "expires_at": reply.lease.expires_at.ToJsonString(),
    }
    if args.json:
        print_json(lease)
    else:
        print(f"lease {lease['lease_id']} on case {lease['case_id']} until {lease['expires_at']}")
        print(f"organs to check: {', '.join(organs) or 'any'}")
        print(f"next: atlasloop pull {lease['lease_id']} --out {lease['case_id']}")
    return 0


def stats(args: argparse.Namespace, client: Client) -> int:
    reply = client.statistics()
    rows = [
        {
            "round": e.round,
            "organ": organ_from_proto(e.organ),
            "revised": e.cases_revised,
            "mean_dice": round(e.mean_dice, 3),
            "tags": dict(e.tag_counts),
        }
        for e in reply.organs
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "organs": rows,
                    "minutes_per_round": dict(reply.minutes_per_round),
                    "revisions_per_annotator": dict(reply.revisions_per_annotator),
                },
                indent=2,
            )
        )
        return 0
    listing(rows, False, NO_STATS)
    for round_, minutes in sorted(reply.minutes_per_round.items()):
        print(f"round {round_}: {minutes:.1f} min")
    return 0


def status(args: argparse.Namespace, client: Client) -> int:
    rows = []
    for name in SERVICES:
        channel = client.channels[name]
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
            health = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            health = "UNREACHABLE" if exc.code() == grpc.StatusCode.UNAVAILABLE else exc.code().name
        rows.append({"service": name, "address": client.targets[name], "health": health})
    serving = next((r for r in rows if r["service"] == "inference"), None)
    if serving and serving["health"] == "SERVING":
        sets = client.inference.ListModelSets(
            inference_pb2.ListModelSetsRequest(), metadata=client.auth("admin"), timeout=10
        ).model_sets
        serving["model_set"] = next((s.version for s in sets if s.current), "")
    listing(rows, args.json, "")
    return 0 if all(r["health"] == "SERVING" for r in rows) else 6
