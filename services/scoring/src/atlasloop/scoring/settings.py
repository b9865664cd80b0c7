"""Settings of the scoring service (environment prefix ``ATLASLOOP_SCORING_``)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from atlasloop.common.service_map import DEFAULT_PORTS
from atlasloop.common.settings import KafkaSettings, S3Settings, ServiceSettings
from atlasloop.method.improved import ImprovedConfig
from atlasloop.method.plausibility import volume_ranges


class ScoringSettings(ServiceSettings):
    """Where the scoring service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_SCORING_", env_nested_delimiter="__", extra="ignore")

    port: int = DEFAULT_PORTS["scoring"]
    mode: str = Field(default="reference", description="Mode whose priorities case.scored carries: reference|improved")
    consume_events: bool = Field(default=True, description="Score on case.predicted events.")
    volume_ranges_ml: dict[str, list[float]] = Field(
        default_factory=dict,
        description="The project's plausible organ volumes in mL, as JSON {organ: [low, high]}, in place of the "
        "adult ranges for the organs named (a paediatric cohort, the demo's half-size bodies).",
    )
    calibrate_expected_dice: bool = Field(
        default=True,
        description="Improved mode: add the model set's expected-Dice offsets (fitted on its gate's held-out "
        "cases) before the expected-Dice gate; false compares the raw soft Dice.",
    )
    s3: S3Settings = Field(default_factory=S3Settings)

    @field_validator("volume_ranges_ml")
    @classmethod
    def _known_and_ordered(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        volume_ranges(value)  # unknown organs, bounds not 0 <= low < high: refused at start
        return value

    def improved(self) -> ImprovedConfig:
        """The improved mode's configuration with this project's volume ranges."""
        return ImprovedConfig(
            volume_ranges_ml=volume_ranges(self.volume_ranges_ml), calibrate_expected_dice=self.calibrate_expected_dice
        )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
