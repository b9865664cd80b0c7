"""Publishing a gated candidate set with its provenance, announcing model sets, rolling back."""

from __future__ import annotations

import logging
from dataclasses import replace

from atlasloop.common import layout
from atlasloop.common.errors import InvalidInput
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from atlasloop.models.records import LoadedModel
from atlasloop.models.registry import ModelRegistry
from atlasloop.training.recipe import Recipe
from atlasloop.training.runs import RunRecord

log = logging.getLogger(__name__)


def candidate_set_version(run_id: str) -> str:
    return f"set-{run_id}"


class Publisher:
    def __init__(self, store: ObjectStore, registry: ModelRegistry, producer: EventProducer) -> None:
        self._store = store
        self._registry = registry
        self._producer = producer

    def publish_set(self, run: RunRecord, candidates: list[LoadedModel], recipe: Recipe) -> str:
        """Register every candidate (weights from the run's candidate keys) and make their set current."""
        provenance = {
            "run_id": run.run_id,
            "base_model_set": run.base_model_set,
            "trigger": run.trigger,
            "label_versions": run.label_versions,
            "revisions": run.revisions,
            "recipe": recipe.model_dump(),
        }
        metrics = {"held_out": {o: {"dice": s.dice, "nsd": s.nsd} for o, s in run.candidate_metrics.items()}}
        members = []
        for candidate in candidates:
            weights = self._store.get_bytes(layout.candidate_key(run.run_id, candidate.architecture))
            self._registry.register(
                candidate.architecture,
                candidate.config.size,
                weights,
                provenance
                | {
                    "base_version": candidate.manifest.provenance["base_version"],
                    "learning_rate": recipe.learning_rate_of(candidate.architecture),
                },
                metrics,
                version=run.run_id,
                preprocess=candidate.preprocess,
                temperatures=applied_temperatures(run.calibration.get(candidate.architecture, {})),
            )
            members.append((candidate.architecture, run.run_id))
        return self._registry.create_set(
            members,
            make_current=True,
            version=candidate_set_version(run.run_id),
            expected_dice_offsets=run.expected_dice_offsets,
        ).version

    def announce(self, model_set: str, run_id: str) -> None:
        self._producer.publish(
            events_pb2.ModelPublished(meta=new_meta("training"), model_set=model_set, run_id=run_id), key="model-set"
        )

    def rollback(self, model_set: str, reason: str) -> str:
        if not reason:
            raise InvalidInput("a rollback needs a reason for the audit log")
        self._registry.set_current(model_set)  # NotFound for an unknown set
        log.info("model set rolled back", extra={"model_set": model_set, "reason": reason})
        self.announce(model_set, "")
        return model_set


def with_temperatures(candidate: LoadedModel, calibration: dict[str, dict[str, dict]]) -> LoadedModel:
    """``candidate`` as it will be published: with the temperatures ``calibration`` applies to it."""
    temperatures = applied_temperatures(calibration.get(candidate.architecture, {}))
    return replace(candidate, manifest=replace(candidate.manifest, temperatures=temperatures))


def applied_temperatures(fits: dict[str, dict]) -> dict[str, float]:
    """organ -> temperature, for the fits whose benefit was measured out of sample
    (``atlasloop.models.calibration``); the other organs stay at T = 1."""
    return {organ: float(fit["temperature"]) for organ, fit in fits.items() if fit.get("applied")}
