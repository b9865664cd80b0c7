"""Settings come from the service's own prefix, nested with '__'."""

from __future__ import annotations

from atlasloop.storage.settings import StorageSettings
from atlasloop.tracking.settings import TrackingSettings


def test_prefix_and_nesting(monkeypatch):
    monkeypatch.setenv("ATLASLOOP_STORAGE_PORT", "6001")
    monkeypatch.setenv("ATLASLOOP_STORAGE_S3__BUCKET", "cases")
    monkeypatch.setenv("ATLASLOOP_STORAGE_AUTH__DEV_TOKENS", '{"t": "a:admin"}')
    monkeypatch.setenv("ATLASLOOP_TRACKING_PORT", "7001")
    storage = StorageSettings()
    assert (storage.port, storage.s3.bucket, storage.auth.dev_tokens) == (6001, "cases", {"t": "a:admin"})
    assert TrackingSettings().port == 7001
    assert storage.host == "127.0.0.1"
