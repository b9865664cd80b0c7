"""The training service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

from atlasloop.training.app import build
from atlasloop.training.settings import TrainingSettings


def test_spec_serves_training_and_checks_its_dependencies():
    spec = build(TrainingSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.training.v1.TrainingService"]
    assert [c.name for c in spec.checks] == ["s3:atlasloop", "kafka", "ray"]
