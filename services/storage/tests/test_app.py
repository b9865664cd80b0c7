"""The storage service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

from atlasloop.storage.app import build
from atlasloop.storage.settings import StorageSettings


def test_spec_serves_storage_and_checks_its_dependencies():
    spec = build(StorageSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.storage.v1.StorageService"]
    assert [c.name for c in spec.checks] == ["s3:atlasloop", "s3-versioning", "s3-staging-expiry", "kafka"]
