"""The inference service is assembled with exactly the readiness checks it depends on, and the
Serve application takes from the Ray pods' environment what its deploy request does not carry."""

from __future__ import annotations

from atlasloop.inference.app import build
from atlasloop.inference.settings import InferenceSettings


def test_spec_serves_inference_and_checks_its_dependencies():
    spec = build(InferenceSettings())
    assert [s.full_name for s in spec.services] == ["atlasloop.inference.v1.InferenceService"]
    assert [c.name for c in spec.checks] == ["s3:atlasloop", "kafka", "model-set", "ensemble"]


def test_serve_builder_merges_the_request_over_the_pods_environment(monkeypatch):
    """serveConfigV2 and the stack's deploy request carry no credentials: the Ray pods' environment
    fills them in, block by block, so a request naming only a bucket keeps the pods' S3 keys."""
    from atlasloop.inference.serve_app import resolve_args

    monkeypatch.setenv("ATLASLOOP_INFERENCE_STORAGE_TARGET", "atlasloop-storage:50051")
    monkeypatch.setenv("ATLASLOOP_INFERENCE_STORAGE_TOKEN", "from-a-secret")
    monkeypatch.setenv("ATLASLOOP_INFERENCE_S3__SECRET_KEY", "s3-secret")
    monkeypatch.setenv("ATLASLOOP_INFERENCE_MIRROR_AXES", "[0, 1, 2]")
    parsed = resolve_args({"overlap": 0.75, "architectures": ["unet"]})
    assert (parsed.storage_target, parsed.storage_token) == ("atlasloop-storage:50051", "from-a-secret")
    assert parsed.mirror_axes == (0, 1, 2)  # test-time mirroring from the pods' environment
    assert parsed.s3["secret_key"] == "s3-secret" and parsed.overlap == 0.75 and parsed.architectures == ("unet",)
    given = resolve_args({"s3": {"bucket": "test-bucket"}, "kafka": {"topic_prefix": "t."}, "storage_target": "t"})
    assert given.s3["bucket"] == "test-bucket" and given.s3["secret_key"] == "s3-secret"
    assert (
        given.kafka["topic_prefix"] == "t." and given.storage_target == "t" and given.storage_token == "from-a-secret"
    )
