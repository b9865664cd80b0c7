"""Settings of the tracking service (environment prefix ``ATLASLOOP_TRACKING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.settings import DatabaseSettings, KafkaSettings, ServiceSettings


class TrackingSettings(ServiceSettings):
    """Where the tracking service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(
        env_prefix="ATLASLOOP_TRACKING_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50055
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
