"""``atlasloop <command>``: see ``atlasloop --help``."""

from __future__ import annotations

import argparse
import sys

from atlasloop.cli import (
    bulk_import,
    imaging_commands,
    loop_commands,
    models_command,
    score_command,
    synth_command,
)
from atlasloop.common.errors import AtlasError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atlasloop", description="AtlasLoop: AI-assisted CT annotation")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imaging_commands.register(commands)
    synth_command.register(commands)
    bulk_import.register(commands)
    score_command.register(commands)
    models_command.register(commands)
    loop_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except AtlasError as exc:
        print(f"atlasloop {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
