"""Settings of the storage service (environment prefix ``ATLASLOOP_STORAGE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.settings import KafkaSettings, S3Settings, ServiceSettings


class StorageSettings(ServiceSettings):
    """Where the storage service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(
        env_prefix="ATLASLOOP_STORAGE_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50051
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
