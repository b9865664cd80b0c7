"""Settings of the web page (environment prefix ``ATLASLOOP_WEB_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from atlasloop.common.service_map import SERVICES, default_target
from atlasloop.common.settings import AuthSettings
from atlasloop.common.tls import ClientTls
from atlasloop.web.oidc import OidcSettings

DEFAULT_PORT = 8790  # atlasloop.devstack.ports.Ports.web


class WebSettings(BaseSettings):
    """Where the page listens, who may sign in (the same identities the services accept), and
    where the services are."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_WEB_", env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    log_level: str = "INFO"
    auth: AuthSettings = Field(default_factory=AuthSettings)
    oidc: OidcSettings = Field(
        default_factory=OidcSettings, description="Sign-in with the identity provider (auth.mode jwt)."
    )
    targets: dict[str, str] = Field(default_factory=lambda: {name: default_target(name) for name in SERVICES})
    client_tls: ClientTls = Field(default_factory=ClientTls, description="TLS of the calls to the services.")
    session_key: SecretStr | None = Field(
        default=None,
        description="Fernet key sealing session cookies (32 url-safe base64 bytes), the same on every replica; "
        "none: a random key per process (sessions end when it restarts).",
    )
    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86400, description="A sign-in lasts this long.")
    secure_cookies: bool = Field(default=False, description="Cookies only over HTTPS (true behind the Ingress).")
    max_edit_voxels: int = Field(default=4_000_000, ge=1, description="Voxels one revision may paint or erase.")
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="Largest request body read.")
    volume_cache_bytes: int = Field(default=1 << 30, ge=0, description="Label volumes kept in memory for slicing.")
