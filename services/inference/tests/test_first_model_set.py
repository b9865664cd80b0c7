"""A new install has no model set yet: the ensemble's members start healthy and idle, a case asked
for meanwhile is NotReady (retried later, never dead-lettered) with what to do, and the inference
service reports NOT_SERVING saying so; once a set is made current the members load it by
themselves."""

from __future__ import annotations

import pytest

from atlasloop.common import layout
from atlasloop.common.errors import NotFound, NotReady
from atlasloop.inference import serve_app
from atlasloop.inference.first_set import model_set_check
from atlasloop.models.records import ModelSet


class Registry:
    """The model registry as the members see it, before and after an operator makes a set current."""

    def __init__(self) -> None:
        self.current_set: ModelSet | None = None
        self.loaded: list[tuple[str, str]] = []

    def current(self) -> str:
        if self.current_set is None:
            raise NotFound("no current model set; import models and create one")
        return self.current_set.version

    def model_set(self, version: str) -> ModelSet:
        assert self.current_set is not None and version == self.current_set.version
        return self.current_set

    def load(self, architecture: str, version: str) -> object:
        self.loaded.append((architecture, version))
        return object()


@pytest.fixture
def registry(monkeypatch) -> Registry:
    registry = Registry()
    monkeypatch.setattr(serve_app, "_registry", lambda s3: registry)
    return registry


def test_members_wait_healthy_for_a_first_set_and_load_it_when_it_comes(registry):
    member = serve_app.Member.func_or_class({}, "unet", 0.5, 1, follow_s=3600.0)
    try:
        assert member.waiting
        member.check_health()  # idle, not broken: Serve keeps the replica
        registry.current_set = ModelSet.from_json(
            {"version": "set-1", "members": [{"architecture": "unet", "version": "v1"}], "created_at": "2026-12-06"}
        )
        member._follow_current()  # what its follower thread does every follow_s
        assert not member.waiting and registry.loaded == [("unet", "v1")]
        member.check_health()
    finally:
        member._stop.set()


def test_a_case_asked_for_before_any_set_is_not_ready_with_what_to_do(registry):
    ensemble = object.__new__(serve_app.Ensemble.func_or_class)
    ensemble.registry = registry
    with pytest.raises(NotReady, match="atlasloop models import"):
        ensemble._current()


def test_the_service_is_not_ready_until_a_set_is_current():
    class Bucket:  # the registry's pointer, as the bucket holds it or not
        keys: set[str] = set()

        def exists(self, key: str) -> bool:
            return key in self.keys

    bucket = Bucket()
    check = model_set_check(bucket)  # type: ignore[arg-type]
    with pytest.raises(NotReady, match="no model set is current yet"):
        check.probe()
    bucket.keys.add(layout.CURRENT_MODEL_SET)
    check.probe()
