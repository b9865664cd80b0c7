"""Settings of the rendering service (environment prefix ``ATLASLOOP_RENDERING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atlasloop.common.service_map import DEFAULT_PORTS
from atlasloop.common.settings import S3Settings, ServiceSettings


class RenderingSettings(ServiceSettings):
    """Where the rendering service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_RENDERING_", env_nested_delimiter="__", extra="ignore")

    port: int = DEFAULT_PORTS["rendering"]
    cache_bytes: int = Field(default=2 * 1024**3, description="Volume cache limit (LRU by bytes).")
    max_size_px: int = Field(default=2048, description="Largest picture side a request may ask for.")
    max_salient: int = Field(default=64, description="Most slices one salient-slice stream may carry.")
    draw_slots: int = Field(
        default=0,
        ge=0,
        description="Pictures drawn at once, the rest waiting in arrival order; 0 = one per CPU this process may use "
        "(its affinity, capped by its cgroup quota).",
    )
    blas_threads: int = Field(
        default=1,
        ge=0,
        description="BLAS threads in the service's process (OpenBLAS's idle workers spin); 0 = the library's default.",
    )
    attention_mode: str = Field(default="reference", description="Which scoring mode's attention to draw.")
    s3: S3Settings = Field(default_factory=S3Settings)
