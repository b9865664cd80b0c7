"""The rendering service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

from atlasloop.rendering.app import build
from atlasloop.rendering.settings import RenderingSettings


def test_spec_serves_rendering_and_checks_its_dependencies():
    spec = build(RenderingSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.rendering.v1.RenderingService"]
    assert [c.name for c in spec.checks] == ["s3:atlasloop"]
