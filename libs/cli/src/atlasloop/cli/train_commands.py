"""Training from a terminal: ``train``, ``watch`` and ``runs``."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from atlasloop.cli.connection import add_client_arguments, client_from_args
from atlasloop.cli.output import listing
from atlasloop.client import Client
from atlasloop.common.domain import RunState

NO_RUNS = "no training runs yet: 'atlasloop train --reason ...' starts one (approved revisions also trigger them)"


def register(commands: argparse._SubParsersAction) -> None:
    def add(name: str, help_: str, handler) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_)
        add_client_arguments(parser)
        parser.set_defaults(run=lambda args: _with_client(args, handler))
        return parser

    p = add("train", "start a training run", train)
    p.add_argument("--reason", default="manual")
    p.add_argument("--from-originals", action="store_true", help="also train on the imported labels")
    p.add_argument("--epochs", type=int, default=0, help="instead of the recipe's, for this run")
    p.add_argument("--learning-rate", type=float, default=0.0, help="instead of the recipe's, for this run")
    p.add_argument("--watch", action="store_true")
    p = add("watch", "follow a training run until it ends", watch)
    p.add_argument("run_id")
    p = add("runs", "list training runs, newest first", runs)
    p.add_argument("--json", action="store_true", help="print JSON instead of columns")


def _with_client(args: argparse.Namespace, handler) -> int:
    client = client_from_args(args)
    try:
        return int(handler(args, client))
    finally:
        client.close()


def train(args: argparse.Namespace, client: Client) -> int:
    run = client.start_run(
        args.reason, from_originals=args.from_originals, epochs=args.epochs, learning_rate=args.learning_rate
    )
    print(run.run_id)
    return watch(argparse.Namespace(run_id=run.run_id), client) if args.watch else 0


def watch(args: argparse.Namespace, client: Client) -> int:
    with tqdm(desc=args.run_id, unit="epoch", disable=None) as bar:  # no bar unless a terminal
        for update in client.watch(args.run_id):
            if update.epoch:
                bar.update(1)
                bar.set_postfix(member=update.architecture, loss=f"{update.loss:.3f}", eta=f"{update.eta_s:.0f}s")
    run = client.run(args.run_id)
    state = RunState.from_proto(run.state)
    print(f"{args.run_id}: {state.value} ({run.reason})")
    return 0 if state is not RunState.FAILED else 1


def runs(args: argparse.Namespace, client: Client) -> int:
    rows = [
        {
            "run": r.run_id,
            "state": RunState.from_proto(r.state).value,
            "trigger": r.trigger,
            "published": r.published_model_set,
            "reason": r.reason,
        }
        for r in client.runs()
    ]
    return listing(rows, args.json, NO_RUNS)
