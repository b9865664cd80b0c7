"""Where each service is: ``ATLASLOOP_<SERVICE>_TARGET`` when set, else the workstation default;
and how to reach it: TLS when ``ATLASLOOP_TLS_CA`` names the services' CA (or ``ATLASLOOP_TLS=1``
for a CA the system trusts), with ``ATLASLOOP_TLS_CERT``/``ATLASLOOP_TLS_KEY`` for services that
require a client certificate and ``ATLASLOOP_TLS_SERVER_NAME`` when the certificate names another
host than the target."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from atlasloop.common.service_map import SERVICES, default_target
from atlasloop.common.tls import ClientTls


def target_from_env(service: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(f"ATLASLOOP_{service.upper()}_TARGET", default_target(service))


def targets_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Every service's address (host:port)."""
    return {name: target_from_env(name, environ) for name in SERVICES}


def tls_from_env(environ: Mapping[str, str] = os.environ) -> ClientTls | None:
    """The client side of TLS from the environment (module docstring); None: plaintext."""
    ca, cert, key = (environ.get(f"ATLASLOOP_TLS_{k}") or None for k in ("CA", "CERT", "KEY"))
    if not (ca or cert or environ.get("ATLASLOOP_TLS", "").lower() in ("1", "true", "yes")):
        return None
    return ClientTls(
        enabled=True,
        ca_file=Path(ca) if ca else None,
        cert_file=Path(cert) if cert else None,
        key_file=Path(key) if key else None,
        server_name=environ.get("ATLASLOOP_TLS_SERVER_NAME") or None,
    )
