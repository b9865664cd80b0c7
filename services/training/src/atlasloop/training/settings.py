"""Settings of the training service (environment prefix ``ATLASLOOP_TRAINING_``)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.service_map import DEFAULT_PORTS, default_target
from atlasloop.common.settings import KafkaSettings, S3Settings, ServiceSettings
from atlasloop.training.recipe import Recipe


class TriggerPolicy(BaseModel):
    """When approved revisions start a run; any rule that holds fires it."""

    approved_threshold: int = Field(default=20, ge=0, description="New approved revisions since the last run; 0 = off.")
    organ_thresholds: dict[str, int] = Field(
        default_factory=dict, description="Organ -> new approved revisions touching it."
    )
    schedule_s: float = Field(default=0.0, ge=0, description="Run every so often when anything is pending; 0 = off.")


class GatePolicy(BaseModel):
    """How a candidate set is judged against the current one."""

    margin: float = Field(default=0.05, ge=0, le=1, description="Largest allowed per-organ Dice drop.")
    min_improvement: float = Field(default=0.0, ge=0, description="Overall score gain needed to publish.")
    nsd_tolerance_mm: float = Field(default=2.0, gt=0)
    held_out_fraction: float = Field(default=0.2, gt=0, le=0.5)
    held_out_max: int = Field(default=20, ge=1)
    replay_eval_cases: int = Field(default=4, ge=0, description="Replay cases scored for forgetting; 0 = skip.")
    site_held_out_fraction: float = Field(
        default=0.25,
        ge=0,
        le=0.5,
        description="Share of each site's approved cases kept to evaluate on (never trained on); 0 = none.",
    )


class TrainingSettings(ServiceSettings):
    """Where the training service listens, its policies and its recipe."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_TRAINING_", env_nested_delimiter="__", extra="ignore")

    port: int = DEFAULT_PORTS["training"]
    storage_target: str = Field(default=default_target("storage"), description="The storage service (host:port).")
    storage_token: str = Field(default="", description="Bearer token with the service role for storage.")
    tracking_target: str = Field(default=default_target("tracking"), description="The tracking service (host:port).")
    tracking_token: str = Field(default="", description="Bearer token with the service role for tracking.")
    ray_dashboard_url: str = Field(default="http://127.0.0.1:8265", description="The Ray dashboard (jobs REST API).")
    ray_auth_token: str = Field(
        default="",
        description="Ray's token (Ray token authentication), sent to the dashboard; empty when the cluster has none.",
    )
    job_poll_s: float = Field(default=1.0, gt=0, description="How often a running job and its record are read.")
    verified_regions_mode: str = Field(
        default="reference",
        pattern="^(reference|improved)$",
        description="The scoring mode whose attention regions annotators revise by (what a guided revision verified).",
    )
    triggers: TriggerPolicy = Field(default_factory=TriggerPolicy)
    gate: GatePolicy = Field(default_factory=GatePolicy)
    recipe: Recipe = Field(default_factory=Recipe)
    replay_max_cases: int = Field(default=24, ge=0, description="Replay examples loaded per run (seeded sample).")
    num_workers: int = Field(default=2, ge=1, description="Ray Train workers per member.")
    use_gpu: bool = False
    cpus_per_worker: float = Field(default=0.5, gt=0)
    torch_threads: int = Field(default=0, ge=0, description="Torch threads per worker; 0 = its CPUs, at least 1.")
    train_storage_path: str = Field(default="", description="Ray Train's storage_path; a temp dir when empty.")
    consume_events: bool = True
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
