"""Settings of the storage service (environment prefix ``ATLASLOOP_STORAGE_``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from atlasloop.common.service_map import DEFAULT_PORTS, default_target
from atlasloop.common.settings import KafkaSettings, S3Settings, ServiceSettings


class PacsSettings(BaseModel):
    """The hospital's PACS, reached over DICOMweb (``ATLASLOOP_STORAGE_PACS__*``)."""

    url: str = Field(default="", description="DICOMweb root of the PACS (QIDO/WADO/STOW-RS); empty: none.")
    username: str = ""
    password: SecretStr = SecretStr("")
    ca_file: str | None = Field(default=None, description="CA bundle for an HTTPS PACS with a private CA.")
    send_approved: bool = Field(
        default=False,
        description="Send each approved label of a DICOM case to the PACS as DICOM SEG (STOW-RS), once.",
    )
    timeout_s: float = 60.0


class StorageSettings(ServiceSettings):
    """Where the storage service listens and the dependencies it needs."""

    model_config = SettingsConfigDict(env_prefix="ATLASLOOP_STORAGE_", env_nested_delimiter="__", extra="ignore")

    port: int = DEFAULT_PORTS["storage"]
    max_upload_bytes: int = Field(default=2 * 1024**3, description="Largest file an upload may carry.")
    download_chunk_bytes: int = Field(default=1024 * 1024, description="Default chunk of DownloadVolume.")
    max_chunk_bytes: int = Field(default=4 * 1024 * 1024, description="Largest chunk either way.")
    presign_default_s: int = 300
    presign_max_s: int = 3600
    staging_dir: str | None = Field(default=None, description="Local folder for uploads in flight (temp).")
    staging_expiry_days: int = Field(
        default=7, ge=0, le=3650, description="Days after which staged uploads and their receipts expire; 0 = never."
    )
    bucket_versioning: bool = Field(default=True, description="Enable S3 bucket versioning where supported.")
    label_writers: dict[str, list[str]] = Field(
        default_factory=lambda: {"human": ["tracking"], "ai": ["inference"]},
        description="Label source -> the service identities that may write it (atlasloop.storage.provenance).",
    )
    keep_patient_identifiers: bool = Field(
        default=False,
        description="Keep a DICOM import's patient and visit identifiers (names, ids, dates) in the case "
        "record, shown to admins only; off: they are dropped at import. Never logged nor sent in events.",
    )
    deidentify: bool = Field(
        default=False,
        description="De-identify DICOM imports (PS3.15 basic profile): patient identifiers and the series "
        "description dropped, every UID remapped by HMAC under DEIDENTIFY_KEY, the same UID always to the same.",
    )
    deidentify_key: SecretStr = Field(
        default=SecretStr(""), description="The key UIDs are remapped under (16 bytes or more); keep it secret."
    )
    pacs: PacsSettings = Field(default_factory=PacsSettings)
    tracking_target: str = Field(
        default=default_target("tracking"), description="The tracking service, which confirms approvals."
    )
    tracking_token: str = Field(default="", description="Bearer token with the service role for tracking.")
    s3: S3Settings = Field(default_factory=S3Settings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _deidentification_has_a_key(self) -> StorageSettings:
        if self.deidentify and len(self.deidentify_key.get_secret_value().encode()) < 16:
            raise ValueError("deidentify needs deidentify_key of at least 16 bytes (ATLASLOOP_STORAGE_DEIDENTIFY_KEY)")
        if self.pacs.send_approved and not self.pacs.url:
            raise ValueError("pacs.send_approved needs pacs.url (ATLASLOOP_STORAGE_PACS__URL)")
        if self.deidentify and self.keep_patient_identifiers:
            raise ValueError("deidentify and keep_patient_identifiers contradict each other; choose one")
        return self
