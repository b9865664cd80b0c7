"""The tracking service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

from atlasloop.tracking.app import build
from atlasloop.tracking.settings import TrackingSettings


def test_spec_serves_tracking_and_checks_its_dependencies():
    spec = build(TrackingSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.tracking.v1.TrackingService"]
    assert [c.name for c in spec.checks] == ["database", "schema", "kafka"]
