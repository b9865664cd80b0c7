"""``python -m atlasloop.loop demo``: the closed loop end to end, then the report (``make demo``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atlasloop.loop.config import DemoConfig
from atlasloop.loop.demo import run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atlasloop.loop")
    parser.add_argument("command", choices=["demo"])
    parser.add_argument("--out", type=Path, default=Path("reports/demo"), help="where the report goes")
    parser.add_argument("--run-dir", type=Path, default=Path(".run/demo"), help="the demo stack's state")
    parser.add_argument("--rounds", type=int, default=DemoConfig.rounds)
    parser.add_argument("--per-round", type=int, default=DemoConfig.per_round)
    parser.add_argument("--keep", action="store_true", help="leave the demo stack running afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run_demo(args.out, args.run_dir, DemoConfig(rounds=args.rounds, per_round=args.per_round), keep=args.keep)
    print(f"report: {report.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
