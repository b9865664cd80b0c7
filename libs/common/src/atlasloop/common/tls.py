"""TLS for gRPC: the server side of every service and the client side of every caller (the services
calling each other, the command line, the client library, a viewer).

A service serves TLS when it is given a certificate and key (``ATLASLOOP_<SERVICE>_TLS__CERT_FILE``
and ``__KEY_FILE``); with ``TLS__CLIENT_CA_FILE`` and ``TLS__REQUIRE_CLIENT_CERT`` it also demands a
certificate that CA signed from every caller (mutual TLS between services). A caller speaks TLS
when its ``ClientTls`` is enabled: it checks the server against ``ca_file`` (the system's roots when
none) and presents ``cert_file``/``key_file`` when the server asks. The files are read once, at
start-up, and a missing or unreadable one is a clear error then, not a failed call later.

Only the work port is TLS. The probe port (``probe_port``) stays plaintext and serves nothing but
the standard health service: kubelet's gRPC probe cannot speak TLS, and the health answer carries
no data. Bearer tokens travel in call metadata, so in production every work port must be TLS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, Field, model_validator


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"the {what} {path} is not PEM")
    return data


class ServerTls(BaseModel):
    """The server side: off unless a certificate is given."""

    cert_file: Path | None = Field(default=None, description="PEM certificate chain the service presents.")
    key_file: Path | None = Field(default=None, description="PEM private key of that certificate.")
    client_ca_file: Path | None = Field(default=None, description="PEM CA whose client certificates are accepted.")
    require_client_cert: bool = Field(default=False, description="Mutual TLS: refuse callers without a certificate.")

    @model_validator(mode="after")
    def _complete(self) -> ServerTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TLS needs both cert_file and key_file")
        if self.require_client_cert and self.client_ca_file is None:
            raise ValueError("require_client_cert needs client_ca_file, the CA that signs the callers' certificates")
        if self.cert_file is None and (self.client_ca_file is not None or self.require_client_cert):
            raise ValueError("client certificates can only be checked on a TLS port: set cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    def credentials(self) -> grpc.ServerCredentials:
        assert self.cert_file is not None and self.key_file is not None
        pair = (_read(self.key_file, "TLS key"), _read(self.cert_file, "TLS certificate"))
        roots = _read(self.client_ca_file, "client CA") if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [pair], root_certificates=roots, require_client_auth=self.require_client_cert
        )


class ClientTls(BaseModel):
    """The client side: plaintext unless enabled."""

    enabled: bool = Field(default=False, description="Call the services over TLS.")
    ca_file: Path | None = Field(
        default=None, description="PEM CA that signs the services' certificates (else the system's)."
    )
    cert_file: Path | None = Field(default=None, description="PEM client certificate, for services that require one.")
    key_file: Path | None = Field(default=None, description="PEM private key of the client certificate.")
    server_name: str | None = Field(
        default=None, description="Name to check the certificate against, if not the target's host."
    )

    @model_validator(mode="after")
    def _complete(self) -> ClientTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return self

    def credentials(self) -> grpc.ChannelCredentials:
        roots = _read(self.ca_file, "CA certificate") if self.ca_file else None
        key = _read(self.key_file, "client key") if self.key_file else None
        chain = _read(self.cert_file, "client certificate") if self.cert_file else None
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


def add_port(server: grpc.Server, address: str, tls: ServerTls) -> int:
    """Listen on ``address`` with TLS when configured; the port bound (0 when it could not bind)."""
    if tls.enabled:
        return server.add_secure_port(address, tls.credentials())
    return server.add_insecure_port(address)


def open_channel(target: str, tls: ClientTls | None = None, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to ``target``: TLS when ``tls`` is enabled, plaintext otherwise."""
    if tls is None or not tls.enabled:
        return grpc.insecure_channel(target, options=list(options))
    extra = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target, tls.credentials(), options=[*options, *extra])
