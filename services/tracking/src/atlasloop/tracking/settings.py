"""Settings of the tracking service (environment prefix ``ATLASLOOP_TRACKING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.service_map import DEFAULT_PORTS, default_target
from atlasloop.common.settings import DatabaseSettings, KafkaSettings, ServiceSettings


class TrackingSettings(ServiceSettings):
    """Where the tracking service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_TRACKING_", env_nested_delimiter="__", extra="ignore")

    port: int = DEFAULT_PORTS["tracking"]
    lease_s: int = Field(default=1800, ge=1, description="How long a lease lasts unless renewed.")
    max_active_leases: int = Field(
        default=3, ge=1, le=1000, description="Cases one annotator may hold at once (NextCase refuses beyond)."
    )
    max_lease_hold_s: int = Field(
        default=8 * 3600, ge=1, description="How long one lease may be held in all, renewals included."
    )
    double_read_fraction: float = Field(
        default=0.1, ge=0, le=1, description="Share of approved cases read again by a second annotator."
    )
    storage_target: str = Field(default=default_target("storage"), description="The storage service (host:port).")
    storage_token: str = Field(default="", description="Bearer token with the service role for storage.")
    reconcile_interval_s: int = Field(
        default=600, ge=0, description="Seconds between reconciliation sweeps with storage (0: only on request)."
    )
    reconcile_grace_s: int = Field(
        default=600,
        ge=0,
        description="The sweep leaves younger cases alone (their events may be on the way).",
    )
    reconcile_max_announce: int = Field(
        default=200, ge=1, description="Most cases one sweep asks storage to announce again; the rest wait."
    )
    consume_events: bool = True
    migrate_on_start: bool = Field(default=True, description="Run the Alembic migrations at start-up.")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
