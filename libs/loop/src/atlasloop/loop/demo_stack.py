"""The demo's own stack: fresh on the demo's ports, started without inference until a trained set exists."""

from __future__ import annotations

import shutil
from pathlib import Path

from atlasloop.common.service_map import SERVICES
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from atlasloop.loop.config import DemoConfig


def fresh_stack(run_dir: Path, ports: Ports, config: DemoConfig) -> Stack:
    """A stack with no cases, events or runs of before: anything left from an earlier run on
    these ports is stopped and its data removed (the private PostgreSQL keeps its data outside
    the run folder when run as root)."""
    stack = Stack(run_dir, ports, private_postgres=True, service_settings=config.service_settings())
    stack.down()
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(stack.private_postgres_dir(), ignore_errors=True)
    return stack


def start_stack(stack: Stack, config: DemoConfig) -> None:
    """Everything but the inference service, which ``Demo.run`` starts once the first trained set
    is current; the untrained bootstrap set is what the first training run starts from."""
    stack.up([name for name in SERVICES if name != "inference"])
    stack.seed_models(config.model_spacing_mm)
