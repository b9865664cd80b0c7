"""The six services and their default ports, written once.

The services' settings take their default port and the storage target from here; the client
library, the command line and the local stack take their addresses from here (the stack's test and
demo port sets are offsets of the same order, ``atlasloop.devstack.ports``).
"""

from __future__ import annotations

SERVICES = ("storage", "inference", "scoring", "rendering", "tracking", "training")
FIRST_PORT = 50051
DEFAULT_PORTS: dict[str, int] = {name: FIRST_PORT + i for i, name in enumerate(SERVICES)}


def default_target(service: str) -> str:
    """Where ``service`` listens on a workstation (``make up``)."""
    return f"127.0.0.1:{DEFAULT_PORTS[service]}"
