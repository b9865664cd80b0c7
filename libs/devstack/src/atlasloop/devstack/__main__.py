"""``python -m atlasloop.devstack up|down|status``: the local stack behind ``make up``/``make down``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from atlasloop.common.readiness import grpc_health_check
from atlasloop.devstack.ports import SERVICES
from atlasloop.devstack.stack import NEEDS, Stack


def service_map(stack: Stack) -> str:
    """A table of what runs where, and whether each service answers SERVING."""
    p = stack.ports
    lines = [
        "AtlasLoop local stack (all on 127.0.0.1)",
        f"  S3 (SeaweedFS)   http://127.0.0.1:{p.s3}  bucket 'atlasloop'",
        f"  Kafka (Tansu)    127.0.0.1:{p.kafka}",
        f"  PostgreSQL       {stack.database_url().split('@', 1)[1]}",
        f"  Ray head (GCS)   127.0.0.1:{p.ray}",
        "  services (gRPC, health + reflection):",
    ]
    for name in SERVICES:
        try:
            grpc_health_check(name, stack.service_target(name), timeout_s=1).probe()
            state = "SERVING"
        except Exception:  # noqa: BLE001 - anything else is "not serving"
            state = "NOT SERVING"
        needs = ", ".join(NEEDS[name])
        lines.append(f"    {name:<10} 127.0.0.1:{p.services[name]}  {state:<11} needs {needs}")
    page = "running" if stack.processes.running("web") else "not running"
    lines += [
        f"  web page          {stack.web_url()}  {page}; sign in with a token from tokens.json",
        f"  logs and pid files: {stack.run_dir}",
        f"  dev bearer tokens:  {stack.run_dir / 'tokens.json'}",
        "  stop with: make down",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atlasloop-stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", type=Path, default=Path(".run"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stack = Stack(args.run_dir)
    if args.command == "up":
        started = time.monotonic()
        stack.up()
        stack.start_web()
        print(service_map(stack))
        print(f"stack up in {time.monotonic() - started:.1f} s")
    elif args.command == "down":
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    else:
        print(service_map(stack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
