"""Settings of the scoring service (environment prefix ``ATLASLOOP_SCORING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.service_map import DEFAULT_PORTS
from atlasloop.common.settings import KafkaSettings, S3Settings, ServiceSettings


class ScoringSettings(ServiceSettings):
    """Where the scoring service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_SCORING_", env_nested_delimiter="__", extra="ignore")

    port: int = DEFAULT_PORTS["scoring"]
    mode: str = Field(default="reference", description="Mode whose priorities case.scored carries: reference|improved")
    consume_events: bool = Field(default=True, description="Score on case.predicted events.")
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
