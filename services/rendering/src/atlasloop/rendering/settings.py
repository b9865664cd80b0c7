"""Settings of the rendering service (environment prefix ``ATLASLOOP_RENDERING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.settings import S3Settings, ServiceSettings


class RenderingSettings(ServiceSettings):
    """Where the rendering service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(
        env_prefix="ATLASLOOP_RENDERING_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50054
    s3: S3Settings = Field(default_factory=S3Settings)
