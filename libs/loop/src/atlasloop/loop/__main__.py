"""``python -m atlasloop.loop demo``: the closed loop end to end, then the report (``make demo``).

The project's label schema is the process's (``ATLASLOOP_LABEL_SCHEMA``, read at import), and the
demo's stack passes it to every service and the Ray cluster: ``ATLASLOOP_LABEL_SCHEMA=abdomenatlas-1.1
python -m atlasloop.loop demo --reduced`` runs the reduced loop as a 25-class project."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atlasloop.devstack.ports import Ports
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
    parser.add_argument(
        "--reduced", action="store_true", help="the tests' reduced loop: 8 cases, 2 rounds of 1 (ignores --rounds)"
    )
    parser.add_argument("--port-slot", type=int, default=None, help="test port set 0-6 (default: the demo's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = DemoConfig.reduced() if args.reduced else DemoConfig(rounds=args.rounds, per_round=args.per_round)
    ports = Ports.for_tests(args.port_slot) if args.port_slot is not None else None
    report = run_demo(args.out, args.run_dir, config, ports=ports, keep=args.keep)
    print(f"report: {report.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
