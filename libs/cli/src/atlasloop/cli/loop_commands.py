"""The loop from a terminal, over gRPC: queue, next, slices, revise, review, train, watch, runs, stats.

Addresses default to ``make up``'s ports (``ATLASLOOP_<SERVICE>_TARGET`` overrides each); tokens
come from ``--token`` / ``ATLASLOOP_TOKEN`` (one token for every call) or, on a workstation, from
the development tokens in ``.run/tokens.json`` (the role each call needs).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tqdm import tqdm

from atlasloop.client import Client, TokenFile, targets_from_env
from atlasloop.common.domain import ErrorTag, Role, organ_to_proto
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.volume import load_nifti


def client_from_args(args: argparse.Namespace) -> Client:
    if args.token:
        tokens = dict.fromkeys(Role, args.token)
    else:
        try:
            tokens = TokenFile(args.run_dir).by_role()
        except FileNotFoundError as exc:
            raise SystemExit(f"no --token given and {exc}") from None
    return Client(targets_from_env(), tokens)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default=os.environ.get("ATLASLOOP_TOKEN"), help="bearer token for every call")
    parser.add_argument("--run-dir", type=Path, default=Path(".run"), help=argparse.SUPPRESS)


def _queue(args, client: Client) -> int:
    if args.round:
        proposed = client.queueable(client.propose_round(args.round, 10 * args.cases))[: args.cases]
        reply = client.queue(args.round, proposed)
        print(f"round {args.round}: queued {reply.queued}, already queued {reply.already_queued}")
    for case in client.cases([common_pb2.CASE_STATE_QUEUED]):
        print(f"{case.case_id}\tpriority {case.priority:.1f}")
    return 0


def _next(args, client: Client) -> int:
    reply = client.next_case()
    if reply is None:
        print("the queue is empty")
        return 1
    organs = ", ".join(ORGANS.get(o, "?") for o in reply.organs)
    print(
        json.dumps(
            {
                "lease_id": reply.lease.lease_id,
                "case_id": reply.lease.case_id,
                "label_version": reply.label_version,
                "organs": organs,
                "expires_at": reply.lease.expires_at.ToJsonString(),
            },
            indent=2,
        )
    )
    return 0


def _slices(args, client: Client) -> int:
    for path in client.salient_slices(args.case_id, args.label_version, args.out, args.count):
        print(path)
    return 0


def _revise(args, client: Client) -> int:
    tags = []
    for item in args.tag or []:
        organ, _, tag = item.partition(":")
        tags.append(common_pb2.OrganErrorTag(organ=organ_to_proto(organ), tag=ErrorTag.parse(tag).to_proto()))
    organs = [organ_to_proto(o) for o in args.organs.split(",")] if args.organs else []
    reply = client.submit_revision(args.lease_id, load_nifti(args.labels), organs, tags, args.minutes * 60, args.note)
    print(
        json.dumps(
            {
                "revision_id": reply.revision_id,
                "label_version": reply.label_version,
                "changed": {ORGANS.get(d.organ, "?"): round(d.ml_added + d.ml_removed, 2) for d in reply.diffs},
            },
            indent=2,
        )
    )
    return 0


def _review(args, client: Client) -> int:
    reply = client.review(args.revision_id, approve=args.verdict == "approve", reason=args.reason)
    print(common_pb2.CaseState.Name(reply.state))
    return 0


def _train(args, client: Client) -> int:
    run = client.start_run(
        args.reason, from_originals=args.from_originals, epochs=args.epochs, learning_rate=args.learning_rate
    )
    print(run.run_id)
    return _watch(argparse.Namespace(run_id=run.run_id), client) if args.watch else 0


def _watch(args, client: Client) -> int:
    with tqdm(desc=args.run_id, unit="epoch") as bar:
        for update in client.watch(args.run_id):
            if update.epoch:
                bar.update(1)
                bar.set_postfix(member=update.architecture, loss=f"{update.loss:.3f}", eta=f"{update.eta_s:.0f}s")
    run = client.run(args.run_id)
    print(f"{args.run_id}: state {run.state} ({run.reason})")
    return 0


def _runs(args, client: Client) -> int:
    for run in client.runs():
        print(f"{run.run_id}\tstate {run.state}\t{run.trigger}\t{run.published_model_set}\t{run.reason}")
    return 0


def _stats(args, client: Client) -> int:
    stats = client.statistics()
    for entry in stats.organs:
        print(
            f"round {entry.round}\t{ORGANS.get(entry.organ, '?')}\trevised {entry.cases_revised}\t"
            f"mean Dice {entry.mean_dice:.3f}\ttags {dict(entry.tag_counts)}"
        )
    for round_, minutes in sorted(stats.minutes_per_round.items()):
        print(f"round {round_}: {minutes:.1f} min")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    def add(name: str, help_: str, handler) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_)
        _common(parser)

        def run(args: argparse.Namespace) -> int:
            client = client_from_args(args)
            try:
                return handler(args, client)
            finally:
                client.close()

        parser.set_defaults(run=run)
        return parser

    p = add("queue", "show the review queue; with --round, propose and queue a round first", _queue)
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--cases", type=int, default=10, help="cases to queue with --round")
    add("next", "lease the next case of the queue", _next)
    p = add("slices", "save the most salient slices of a case as PNG", _slices)
    p.add_argument("case_id")
    p.add_argument("--label-version", default="")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("slices"))
    p = add("revise", "submit a revised label map for a leased case", _revise)
    p.add_argument("lease_id")
    p.add_argument("labels", type=Path, help="the revised label map (NIfTI)")
    p.add_argument("--organs", default="", help="comma-separated organs revised")
    p.add_argument("--tag", action="append", help="organ:tag, for example liver:leakage (repeatable)")
    p.add_argument("--minutes", type=float, required=True, help="time spent")
    p.add_argument("--note", default="")
    p = add("review", "approve or reject a revision", _review)
    p.add_argument("revision_id")
    p.add_argument("verdict", choices=["approve", "reject"])
    p.add_argument("--reason", default="")
    p = add("train", "start a training run", _train)
    p.add_argument("--reason", default="manual")
    p.add_argument("--from-originals", action="store_true", help="also train on the imported labels")
    p.add_argument("--epochs", type=int, default=0, help="instead of the recipe's, for this run")
    p.add_argument("--learning-rate", type=float, default=0.0, help="instead of the recipe's, for this run")
    p.add_argument("--watch", action="store_true")
    p = add("watch", "follow a training run until it ends", _watch)
    p.add_argument("run_id")
    add("runs", "list training runs, newest first", _runs)
    add("stats", "per-round, per-organ revision statistics", _stats)
