"""Typed settings shared by every service.

Each service defines one ``Settings`` class deriving from :class:`ServiceSettings`, with the
environment prefix ``ATLASLOOP_<SERVICE>_`` and only the dependency blocks it needs. Nested
values use ``__``: ``ATLASLOOP_STORAGE_S3__ENDPOINT=minio:9000``. Settings are read once at
start-up and passed down; handlers never read the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from atlasloop.common.tls import ClientTls, ServerTls


class S3Settings(BaseModel):
    """An S3 API endpoint (MinIO in production, SeaweedFS locally) and the bucket to use."""

    endpoint: str = "127.0.0.1:8333"
    access_key: SecretStr = SecretStr("atlasloop")
    secret_key: SecretStr = SecretStr("atlasloop-secret")
    secure: bool = False
    region: str = "us-east-1"
    bucket: str = "atlasloop"
    create_bucket: bool = Field(
        default=True, description="Create the bucket at start; when false, its absence is an error."
    )
    timeout_s: float = 5.0
    ca_file: Path | None = Field(
        default=None, description="PEM CA that signs the endpoint's certificate (secure), when not a public one."
    )

    def with_secrets(self) -> dict[str, object]:
        """Plain values, keys included, for a process that rebuilds these settings (a Ray task or
        replica); never log or store the result."""
        return self.model_dump(mode="json") | {
            "access_key": self.access_key.get_secret_value(),
            "secret_key": self.secret_key.get_secret_value(),
        }


class KafkaSettings(BaseModel):
    """The Kafka bootstrap servers and how topics are named and created."""

    bootstrap_servers: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    partitions: int = 6
    create_topics: bool = True
    session_timeout_ms: int = 6000
    publish_timeout_s: float = 20.0
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # SASL (SCRAM, as Strimzi's scram-sha-512 listeners and managed Kafkas use; PLAIN only over TLS)
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    # TLS (SSL, SASL_SSL): the brokers' CA when not a public one; a client certificate for mutual TLS
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    # A failing event is retried this many times in all, with backoff doubling from
    # retry_backoff_s up to retry_backoff_max_s, then dead-lettered (atlasloop.common.dead_letters).
    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_backoff_s: float = Field(default=1.0, ge=0.0, le=60.0)
    retry_backoff_max_s: float = Field(default=30.0, ge=0.0, le=600.0)
    # An event its handler is not ready for yet (NotReady: a dependency down) waits this long.
    not_ready_wait_s: float = Field(default=900.0, ge=0.0, le=86_400.0)

    @model_validator(mode="after")
    def _complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password.get_secret_value()
        ):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        if self.security_protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            raise ValueError("SASL PLAIN sends the password as it is: use it over SASL_SSL only")
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("a Kafka client certificate needs both ssl_cert_file and ssl_key_file")
        return self

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka's connection and security settings, shared by every producer, consumer and
        admin client (each adds its own)."""
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            config |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password.get_secret_value(),
            }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl.endpoint.identification.algorithm"] = "https"  # check the broker's name
            if self.ssl_ca_file is not None:
                config["ssl.ca.location"] = str(self.ssl_ca_file)
            if self.ssl_cert_file is not None and self.ssl_key_file is not None:
                config |= {
                    "ssl.certificate.location": str(self.ssl_cert_file),
                    "ssl.key.location": str(self.ssl_key_file),
                }
        return config

    def with_secrets(self) -> dict[str, object]:
        """Plain values, the SASL password included, for a process that rebuilds these settings (a
        Serve replica); never log or store the result."""
        return self.model_dump(mode="json") | {"sasl_password": self.sasl_password.get_secret_value()}


class DatabaseSettings(BaseModel):
    """An SQLAlchemy URL; PostgreSQL in production and tests, SQLite for a one-machine demo."""

    url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    connect_timeout_s: int = Field(default=3, ge=1, description="Give up connecting after this long.")
    statement_timeout_s: int = Field(
        default=30, ge=0, description="PostgreSQL cancels a statement (a lock wait included) after this long; 0: never."
    )


class AuthSettings(BaseModel):
    """How bearer tokens become principals.

    ``dev``: ``dev_tokens`` maps a token to ``"name:role,role"``; for workstations and tests.
    ``jwt``: tokens are JWTs signed by a key in the local JWKS file ``jwks_file`` (no network
    fetch at run time); the ``roles_claim`` holds role names.
    """

    mode: Literal["dev", "jwt"] = "dev"
    dev_tokens: dict[str, str] = Field(default_factory=dict)
    jwks_file: Path | None = None
    issuer: str | None = None
    audience: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    roles_claim: str = "roles"
    grant_key: SecretStr | None = Field(
        default=None, description="HMAC key of case grants (atlasloop.common.case_grants), shared by the services."
    )
    grant_ttl_s: int = Field(default=3600, ge=60, le=86400, description="How long a case grant lets an annotator read.")


class TracingSettings(BaseModel):
    """Where spans go (``atlasloop.common.tracing``). ``none`` records nothing; the trace context is
    carried on either way."""

    exporter: Literal["none", "file", "otlp"] = "none"
    file: Path | None = Field(default=None, description="JSON lines of spans, for exporter 'file'.")
    otlp_endpoint: str = Field(default="", description="host:port of an OTLP/gRPC collector, for 'otlp'.")
    otlp_insecure: bool = True
    sample_ratio: float = Field(default=1.0, ge=0, le=1, description="Share of new traces recorded.")


class ServiceSettings(BaseSettings):
    """What every service process has: where it listens, limits, logging, health and auth."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 50050
    log_level: str = "INFO"
    max_workers: int = 16
    max_concurrent_rpcs: int = Field(
        default=64, ge=1, description="RPCs in progress or queued; beyond: RESOURCE_EXHAUSTED."
    )
    max_open_streams: int = Field(
        default=2, ge=1, description="Concurrent health/reflection streams (no token needed)."
    )
    max_streams_per_principal: int = Field(default=8, ge=1, description="Concurrent streams one caller may hold.")
    stream_idle_s: float = Field(default=60.0, gt=0, description="A request stream silent this long is cancelled.")
    stream_max_s: float = Field(default=3600.0, gt=0, description="No stream lasts longer.")
    probe_port: int = Field(default=0, ge=0, description="Health on a port and threads of its own (kubelet); 0 = none.")
    max_message_bytes: int = 8 * 1024 * 1024
    health_poll_s: float = 1.0
    metrics_port: int = Field(default=0, ge=0, description="Prometheus /metrics on host:metrics_port; 0 = none.")
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tls: ServerTls = Field(default_factory=ServerTls, description="TLS of the work port (atlasloop.common.tls).")
    client_tls: ClientTls = Field(default_factory=ClientTls, description="TLS of the calls to other services.")


def public(settings: BaseModel) -> dict[str, object]:
    """JSON values of ``settings`` without its secrets: what may travel in a job's or a deployment's
    request (the receiving process takes the secrets from its own environment, ``merged``)."""
    return _without_secrets(settings, settings.model_dump(mode="json"))


def _without_secrets(model: BaseModel, dumped: dict[str, object]) -> dict[str, object]:
    kept: dict[str, object] = {}
    for name, value in dumped.items():
        attribute = getattr(model, name, None)
        if isinstance(attribute, SecretStr):
            continue
        if isinstance(attribute, BaseModel) and isinstance(value, dict):
            value = _without_secrets(attribute, value)
        kept[name] = value
    return kept


def merged(base: dict[str, object], carried: dict[str, object]) -> dict[str, object]:
    """``carried`` over ``base``, nested blocks merged key by key (so a carried ``s3`` block without
    keys keeps the keys of ``base``)."""
    out = dict(base)
    for name, value in carried.items():
        below = out.get(name)
        out[name] = merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return out
