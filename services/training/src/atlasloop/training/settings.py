"""Settings of the training service (environment prefix ``ATLASLOOP_TRAINING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.settings import KafkaSettings, RaySettings, S3Settings, ServiceSettings


class TrainingSettings(ServiceSettings):
    """Where the training service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(
        env_prefix="ATLASLOOP_TRAINING_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50056
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
