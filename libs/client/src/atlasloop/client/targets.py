"""Where each service is: ``ATLASLOOP_<SERVICE>_TARGET`` when set, else the workstation default."""

from __future__ import annotations

import os
from collections.abc import Mapping

from atlasloop.common.service_map import SERVICES, default_target


def target_from_env(service: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(f"ATLASLOOP_{service.upper()}_TARGET", default_target(service))


def targets_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Every service's address (host:port)."""
    return {name: target_from_env(name, environ) for name in SERVICES}
