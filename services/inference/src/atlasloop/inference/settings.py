"""Settings of the inference service (environment prefix ``ATLASLOOP_INFERENCE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.service_map import DEFAULT_PORTS, default_target
from atlasloop.common.settings import KafkaSettings, S3Settings, ServiceSettings


class InferenceSettings(ServiceSettings):
    """Where the inference service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_INFERENCE_", env_nested_delimiter="__", extra="ignore")

    port: int = DEFAULT_PORTS["inference"]
    storage_target: str = Field(default=default_target("storage"), description="The storage service (host:port).")
    storage_token: str = Field(default="", description="Bearer token with the service role for storage.")
    serve_url: str = Field(default="http://127.0.0.1:8000", description="Ray Serve's HTTP proxy.")
    ray_dashboard_url: str = Field(default="http://127.0.0.1:8265", description="The Ray dashboard (REST API).")
    ray_auth_token: str = Field(
        default="",
        description="Ray's token (Ray token authentication), sent to the dashboard; empty when the cluster has none.",
    )
    serve_app_name: str = "ensemble"
    # The Serve application's own settings, read on the Ray pods from this same environment prefix:
    num_cpus: float = Field(default=1.0, description="CPUs per member replica.")
    num_gpus: float = Field(default=0.0, description="GPUs per member replica.")
    overlap: float = 0.5
    sw_batch_size: int = 2
    mirror_axes: list[int] = Field(
        default_factory=list,
        description="Test-time mirroring: average each member's logits over the input flipped along every "
        "subset of these axes (0, 1, 2 for all eight, as nnU-Net does; each axis doubles the time); empty: none.",
    )
    predict_labelled: bool = Field(
        default=True,
        description=(
            "Predict cases imported with labels too (their predictions can reveal errors in the original "
            "labels, as the method found in public datasets); off when only unlabelled cases need pseudo-labels."
        ),
    )
    consume_events: bool = True
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
