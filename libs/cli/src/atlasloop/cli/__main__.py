"""``atlasloop <command>``: see ``atlasloop --help``."""

from __future__ import annotations

import argparse
import sys

from atlasloop.cli import (
    bulk_import,
    dead_letters_command,
    export_command,
    imaging_commands,
    models_command,
    pacs_watch,
    pull_command,
    queue_commands,
    reconcile_command,
    release_command,
    revise_command,
    score_command,
    score_external_command,
    slices_command,
    synth_command,
    train_commands,
)
from atlasloop.cli.errors import describe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atlasloop", description="AtlasLoop: AI-assisted CT annotation")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imaging_commands.register(commands)
    synth_command.register(commands)
    bulk_import.register(commands)
    pacs_watch.register(commands)
    score_command.register(commands)
    score_external_command.register(commands)
    models_command.register(commands)
    queue_commands.register(commands)
    pull_command.register(commands)
    slices_command.register(commands)
    revise_command.register(commands)
    train_commands.register(commands)
    dead_letters_command.register(commands)
    reconcile_command.register(commands)
    export_command.register(commands)
    release_command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # one line per failure; --debug for the traceback
        if args.debug:
            raise
        line, code = describe(exc)
        print(f"atlasloop {args.command}: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
