"""How a command reaches one service: its address and a bearer token.

Defaults suit ``make up``: the service's port on 127.0.0.1 and the development token of the
needed role from ``.run/tokens.json``. ``--target`` / ``--token`` or ``ATLASLOOP_<SERVICE>_TARGET``
and ``ATLASLOOP_TOKEN`` point it at a cluster instead, over TLS with ``ATLASLOOP_TLS_CA`` (and
``ATLASLOOP_TLS_CERT``/``_KEY`` for mutual TLS; ``atlasloop.client.targets``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

from atlasloop.client.client import channel_options
from atlasloop.client.targets import target_from_env, tls_from_env
from atlasloop.client.tokens import TokenFile
from atlasloop.common.tls import open_channel


def add_connection_arguments(parser: argparse.ArgumentParser, service: str) -> None:
    parser.add_argument("--target", default=target_from_env(service), help=f"{service} service address (host:port)")
    parser.add_argument(
        "--token",
        default=os.environ.get("ATLASLOOP_TOKEN"),
        help="bearer token (default: the dev token from .run/tokens.json)",
    )
    parser.add_argument("--run-dir", type=Path, default=Path(".run"), help=argparse.SUPPRESS)


def token_for(args: argparse.Namespace, role: str) -> str:
    if args.token:
        return str(args.token)
    try:
        return TokenFile(args.run_dir).token_for(role)
    except FileNotFoundError as exc:
        raise SystemExit(f"no --token given and {exc}") from None


def connect(args: argparse.Namespace, role: str) -> tuple[grpc.Channel, list[tuple[str, str]]]:
    channel = open_channel(args.target, tls_from_env(), channel_options())
    return channel, [("authorization", f"Bearer {token_for(args, role)}")]
