"""The scoring service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

from atlasloop.scoring.app import build
from atlasloop.scoring.settings import ScoringSettings


def test_spec_serves_scoring_and_checks_its_dependencies():
    spec = build(ScoringSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.scoring.v1.ScoringService"]
    assert [c.name for c in spec.checks] == ["s3:atlasloop", "kafka"]
