"""How a loop command reaches the services: every address from ``ATLASLOOP_<SERVICE>_TARGET`` (the
workstation's ports by default), TLS from ``ATLASLOOP_TLS_*`` (``atlasloop.client.targets``) and a
bearer token: ``--token`` / ``ATLASLOOP_TOKEN`` for every
call, or on a workstation the development token of the role each call needs (``.run/tokens.json``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from atlasloop.client import Client, TokenFile, targets_from_env, tls_from_env
from atlasloop.common.domain import Role


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default=os.environ.get("ATLASLOOP_TOKEN"), help="bearer token for every call")
    parser.add_argument("--run-dir", type=Path, default=Path(".run"), help=argparse.SUPPRESS)


def client_from_args(args: argparse.Namespace) -> Client:
    if args.token:
        tokens = dict.fromkeys(Role, args.token)
    else:
        try:
            tokens = TokenFile(args.run_dir).by_role()
        except FileNotFoundError as exc:
            raise SystemExit(f"atlasloop {args.command}: no --token given and {exc}") from None
    return Client(targets_from_env(), tokens, tls=tls_from_env())
