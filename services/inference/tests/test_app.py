"""The inference service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

from atlasloop.inference.app import build
from atlasloop.inference.settings import InferenceSettings


def test_spec_serves_inference_and_checks_its_dependencies():
    spec = build(InferenceSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.inference.v1.InferenceService"]
    assert [c.name for c in spec.checks] == ['s3:atlasloop', 'kafka', 'ray', 'model-set']
