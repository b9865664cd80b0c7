"""The inference service is assembled with exactly the readiness checks it depends on."""

from __future__ import annotations

from atlasloop.inference.app import build
from atlasloop.inference.settings import InferenceSettings


def test_spec_serves_inference_and_checks_its_dependencies():
    spec = build(InferenceSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.inference.v1.InferenceService"]
    assert [c.name for c in spec.checks] == ["s3:atlasloop", "kafka", "ray", "model-set"]


def test_serve_builder_takes_what_kuberay_does_not_pass_from_the_environment(monkeypatch):
    """serveConfigV2 carries no credentials: the Ray pods' environment fills them in."""
    from atlasloop.inference.serve_app import resolve_args

    monkeypatch.setenv("ATLASLOOP_INFERENCE_STORAGE_TARGET", "atlasloop-storage:50051")
    monkeypatch.setenv("ATLASLOOP_INFERENCE_STORAGE_TOKEN", "from-a-secret")
    monkeypatch.setenv("ATLASLOOP_INFERENCE_S3__SECRET_KEY", "s3-secret")
    parsed = resolve_args({"model_set": "set-7", "overlap": 0.75})
    assert (parsed.storage_target, parsed.storage_token) == ("atlasloop-storage:50051", "from-a-secret")
    assert parsed.s3["secret_key"] == "s3-secret" and parsed.model_set == "set-7" and parsed.overlap == 0.75
    given = resolve_args({"s3": {"endpoint": "x"}, "kafka": {}, "storage_target": "t", "storage_token": "k"})
    assert given.s3 == {"endpoint": "x"} and given.storage_target == "t"  # what is passed wins, whole
