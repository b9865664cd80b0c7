"""Each service reads its settings from its own prefix, nested with '__'; ports default to the one service map."""

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


def test_default_ports_come_from_the_service_map():
    from atlasloop.common.service_map import DEFAULT_PORTS

    assert StorageSettings().port == DEFAULT_PORTS["storage"] == 50051
    assert TrackingSettings().port == DEFAULT_PORTS["tracking"] == 50055
    assert TrackingSettings().storage_target == "127.0.0.1:50051"


def test_scoring_takes_a_projects_volume_ranges_and_refuses_bad_ones(monkeypatch):
    import pydantic
    import pytest

    from atlasloop.method.plausibility import VOLUME_RANGE_ML
    from atlasloop.scoring.settings import ScoringSettings

    monkeypatch.setenv("ATLASLOOP_SCORING_VOLUME_RANGES_ML", '{"liver": [350, 1500]}')
    ranges = ScoringSettings().improved().volume_ranges_ml
    assert ranges["liver"] == (350.0, 1500.0) and ranges["spleen"] == VOLUME_RANGE_ML["spleen"]
    for bad, reason in [
        ('{"brain": [1, 2]}', "unknown organ 'brain'"),
        ('{"liver": [1500, 350]}', "0 <= low < high"),
        ('{"liver": [350]}', r"\[low, high\]"),
    ]:
        monkeypatch.setenv("ATLASLOOP_SCORING_VOLUME_RANGES_ML", bad)
        with pytest.raises(pydantic.ValidationError, match=reason):
            ScoringSettings()
