"""Settings of the inference service (environment prefix ``ATLASLOOP_INFERENCE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.settings import KafkaSettings, RaySettings, S3Settings, ServiceSettings


class InferenceSettings(ServiceSettings):
    """Where the inference service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(
        env_prefix="ATLASLOOP_INFERENCE_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50052
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
