"""How the command reaches the services: target address and bearer token.

Defaults suit ``make up``: the service's port on 127.0.0.1 and the development token of the
needed role from ``.run/tokens.json``. ``--target`` / ``--token`` or ``ATLASLOOP_<SERVICE>_TARGET``
and ``ATLASLOOP_TOKEN`` point it at a cluster instead.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import grpc

DEFAULT_PORTS = {"storage": 50051, "inference": 50052, "scoring": 50053, "rendering": 50054, "tracking": 50055,
                 "training": 50056}
MAX_MESSAGE = 16 * 1024 * 1024


def add_connection_arguments(parser: argparse.ArgumentParser, service: str) -> None:
    parser.add_argument("--target", default=os.environ.get(f"ATLASLOOP_{service.upper()}_TARGET",
                                                           f"127.0.0.1:{DEFAULT_PORTS[service]}"),
                        help=f"{service} service address (host:port)")
    parser.add_argument("--token", default=os.environ.get("ATLASLOOP_TOKEN"),
                        help="bearer token (default: the dev token from .run/tokens.json)")
    parser.add_argument("--run-dir", type=Path, default=Path(".run"), help=argparse.SUPPRESS)


def token_for(args: argparse.Namespace, role: str) -> str:
    if args.token:
        return args.token
    tokens_file = args.run_dir / "tokens.json"
    if not tokens_file.exists():
        raise SystemExit(f"no --token given and no {tokens_file}; start the stack with 'make up' or pass --token")
    tokens = json.loads(tokens_file.read_text())
    return next(token for token, spec in tokens.items() if spec.endswith(f":{role}"))


def connect(args: argparse.Namespace, role: str) -> tuple[grpc.Channel, list[tuple[str, str]]]:
    channel = grpc.insecure_channel(args.target, options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                                          ("grpc.max_send_message_length", MAX_MESSAGE)])
    return channel, [("authorization", f"Bearer {token_for(args, role)}")]
