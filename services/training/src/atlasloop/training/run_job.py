"""One training run from start to end, as a Ray job (``atlasloop.training.job``): choose the
labels, fine-tune every member on Ray Train, gate the candidates against the current set in a Ray
task (a GPU worker's in the chart), publish or reject, and record every step.

Every state change is saved before the next step (``RunStore``), so a restarted service knows
what a run reached. Nothing is published unless the gate passes: a run that fails (unreadable
labels, no approved revisions, a diverged loss, a lost Ray worker) or is rejected leaves the
current set current.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from atlasloop.common import layout
from atlasloop.common.domain import RunState
from atlasloop.common.errors import AtlasError, InvalidInput
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.storage_client import StorageClient
from atlasloop.events.v1 import events_pb2
from atlasloop.models.checkpoints import load_checkpoint
from atlasloop.models.records import LoadedModel, shared_preprocess
from atlasloop.models.registry import ModelRegistry
from atlasloop.training import gate, training_set
from atlasloop.training.data import load_usable
from atlasloop.training.distributed import MemberJob
from atlasloop.training.fit import FitFailed, fit
from atlasloop.training.learning import Example
from atlasloop.training.ledger import LabelRef, Ledger
from atlasloop.training.publish import Publisher, with_temperatures
from atlasloop.training.recipe import Recipe
from atlasloop.training.recording import RunLog
from atlasloop.training.runs import RunRecord, RunStore
from atlasloop.training.settings import TrainingSettings
from atlasloop.training.verified import guiding_regions

log = logging.getLogger(__name__)


class RunJob:
    def __init__(
        self,
        settings: TrainingSettings,
        store: ObjectStore,
        producer: EventProducer,
        client: Callable[[], StorageClient],
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = ModelRegistry(store)
        self.runs = RunStore(store)
        self.ledger = Ledger(store)
        self.log = RunLog(self.runs, producer)
        self.publisher = Publisher(store, self.registry, producer)
        self._client = client
        self._started = 0.0

    def recipe(self, run: RunRecord) -> Recipe:
        """The configured recipe with this run's overrides, validated again."""
        return Recipe.model_validate(self.settings.recipe.model_dump() | run.overrides)

    # ---- one run ----

    def execute(self, run: RunRecord) -> None:
        self._started = started = time.monotonic()
        client = self._client()
        try:
            self._run(run, client)
        except AtlasError as exc:
            self.log.finish(run, RunState.FAILED, str(exc), started)
        except Exception as exc:  # a run must end recorded, whatever broke
            log.exception("training run failed", extra={"run_id": run.run_id})
            self.log.finish(run, RunState.FAILED, root_cause(exc), started)
        finally:
            client.close()
            run.seconds = time.monotonic() - started
            self.runs.save(run)

    def _run(self, run: RunRecord, client: StorageClient) -> None:
        run.base_model_set = self.registry.current()
        self.log.transition(run, RunState.RUNNING)
        try:
            chosen = training_set.choose(self.ledger, client, self.settings, run.from_originals)
        except training_set.KeptForEvaluation as exc:
            self.ledger.consume(exc.revisions, run.run_id)
            run.revisions = exc.revisions
            raise
        run.revisions = chosen.revisions
        run.held_out = [str(r) for r in chosen.held_out]
        run.site_held_out = [str(r) for r in chosen.site_held_out]
        run.label_versions = [str(r) for r in chosen.revised + chosen.replay]
        self.runs.save(run)
        current = self.registry.load_set(run.base_model_set)  # verifies checksum, schema, config
        imported = [m.name for m in current if m.runtime is not None]
        if imported:  # they predict with their own framework's pipeline; fine-tuning them is not built
            raise InvalidInput(
                f"model set {run.base_model_set} holds imported members ({', '.join(imported)}), "
                "which this service does not fine-tune; make a set of the trainable members current to train"
            )
        grid = shared_preprocess([m.manifest for m in current])  # candidates keep their base's grid
        revised, replay = (
            self._usable(run, client, chosen.revised, grid),
            self._usable(run, client, chosen.replay, grid),
        )
        if chosen.revised and not revised:
            raise InvalidInput(f"every new approved label was quarantined: {run.quarantined}")
        if not revised and not replay:
            raise InvalidInput("no labelled cases outside the held-out set to train on")
        jobs = [
            MemberJob(m.architecture, m.config.size, m.version, self.registry.weights(m.architecture, m.version))
            for m in current
        ]
        try:
            fit(run, jobs, revised, replay, self.recipe(run), self.settings, lambda *r: self._epoch(run, *r))
        except FitFailed as exc:
            raise InvalidInput(f"training failed: {root_cause(exc.__cause__ or exc)}") from None
        finally:
            self.runs.save(run)
        candidates = [self._candidate(run, model) for model in current]
        self.log.transition(run, RunState.EVALUATING)
        self._gate_and_publish(
            run,
            current,
            candidates,
            self._usable(run, client, chosen.held_out, grid),
            replay,
            self._usable(run, client, chosen.site_held_out, grid),
        )

    def _usable(self, run: RunRecord, client: StorageClient, refs: list[LabelRef], grid: Any) -> list[Example]:
        """Examples of ``refs``; a label that cannot be used is quarantined with its reason (the
        run goes on without it, and no later run picks it up again)."""
        mode = self.settings.verified_regions_mode

        def regions_of(ref: LabelRef) -> list[dict]:
            return guiding_regions(self.store, client, ref.case_id, ref.label_version, mode)

        examples, refused = load_usable(client, refs, grid, regions_of)
        for ref, why in refused.items():
            revisions = self.ledger.quarantine(ref, why)
            run.quarantined[str(ref)] = why
            log.warning(
                "label quarantined",
                extra={"run_id": run.run_id, "label": str(ref), "revisions": revisions, "reason": why},
            )
        if refused:
            self.runs.save(run)
        return examples

    def _epoch(self, run: RunRecord, architecture: str, epoch: int, loss: float, eta_s: float) -> None:
        """Each epoch is saved in the run record (the service streams it to WatchRun) and announced."""
        run.losses.setdefault(architecture, []).append(loss)
        run.progress = {"architecture": architecture, "epoch": epoch, "loss": loss, "eta_s": eta_s}
        self.runs.save(run)
        self.log.publish_event(
            events_pb2.TrainingProgress(
                meta=new_meta("training"), run_id=run.run_id, architecture=architecture, epoch=epoch, loss=loss
            ),
            run.run_id,
        )

    def _candidate(self, run: RunRecord, base: LoadedModel) -> LoadedModel:
        key = layout.candidate_key(run.run_id, base.architecture)
        module = load_checkpoint(base.config, self.store.get_bytes(key), key)
        manifest = replace(base.manifest, version=run.run_id, provenance={"base_version": base.version})
        return LoadedModel(base.architecture, run.run_id, base.config, module, manifest)

    def _gate_and_publish(
        self,
        run: RunRecord,
        current: list[LoadedModel],
        candidates: list[LoadedModel],
        held_out: list[Example],
        replay: list[Example],
        site_held_out: list[Example],
    ) -> None:
        policy = self.settings.gate
        before, after = self._evaluate([current, candidates], held_out)
        run.current_metrics, run.candidate_metrics = before, after
        site_before = site_after = None
        if site_held_out:
            site_before, site_after = self._evaluate([current, candidates], site_held_out)
            run.site_current_metrics, run.site_candidate_metrics = site_before, site_after
        replay_before = replay_after = None
        if policy.replay_eval_cases and replay:
            replay_before, replay_after = self._evaluate([current, candidates], replay[: policy.replay_eval_cases])
            run.replay_metrics = {"current": gate.mean_dice(replay_before), "candidate": gate.mean_dice(replay_after)}
        self.runs.save(run)
        decision = gate.decide(
            before, after, policy.margin, policy.min_improvement, replay_before, replay_after, site_before, site_after
        )
        self.ledger.consume(run.revisions, run.run_id)  # judged: these labels are no longer new
        if not decision.passed:
            self.log.finish(run, RunState.REJECTED, decision.reason, self._started)
            return
        # both held-out sets (never trained on): more cases make the error measurable out of sample
        run.calibration = self._calibrate(candidates, site_held_out + held_out)
        run.expected_dice_offsets = self._expected_dice_offsets(
            [with_temperatures(c, run.calibration) for c in candidates], site_held_out + held_out
        )
        run.published_model_set = self.publisher.publish_set(run, candidates, self.recipe(run))
        reason = decision.reason
        try:
            self.publisher.announce(run.published_model_set, run.run_id)
        except Exception as exc:  # noqa: BLE001 - the set is current either way; say so rather than fail the run
            reason += f"; model.published not delivered ({type(exc).__name__}): roll back or re-announce"
        self.log.finish(run, RunState.PUBLISHED, reason, self._started)

    def _calibrate(self, candidates: list[LoadedModel], examples: list[Example]) -> dict[str, dict[str, dict]]:
        """The candidates' temperatures, fitted on the cases the gate kept aside (the approved
        revisions of the sites being labelled and the frozen held-out set)."""
        fitted: dict[str, dict[str, dict]] = self._improvement_on_worker(
            gate.calibration_here, (candidates, examples), {}, "calibration failed; publishing uncalibrated"
        )
        return fitted

    def _expected_dice_offsets(self, candidates: list[LoadedModel], examples: list[Example]) -> dict[str, float]:
        """The set's expected-Dice offsets per organ, fitted on the same held-out cases as the
        temperatures, with the temperatures applied (as inference will run the set); without them
        the improved scoring gates on the raw value."""
        offsets: dict[str, float] = self._improvement_on_worker(
            gate.expected_dice_offsets_here,
            (candidates, examples),
            {},
            "expected-Dice offsets failed; publishing without",
        )
        return offsets

    def _improvement_on_worker(self, fn: Any, args: tuple[Any, ...], default: Any, failed: str) -> Any:
        """``fn(*args)`` in a Ray task with a training worker's resources (its GPU in the chart), for
        what improves a published set but is never a reason to fail its run: a failure is logged
        as ``failed`` with its root cause, and ``default`` returned."""
        import ray

        task = ray.remote(num_cpus=self.settings.cpus_per_worker, num_gpus=1 if self.settings.use_gpu else 0)(fn)
        try:
            return ray.get(task.remote(*args))
        except Exception as exc:  # noqa: BLE001 - an improvement, never a reason to fail the run
            log.warning(failed, extra={"reason": root_cause(exc)})
            return default

    def _evaluate(self, sets: list[list[LoadedModel]], examples: list[Example]) -> list[gate.Scores]:
        """Each set scored on ``examples`` in one Ray task per set, on a worker with the training
        workers' resources (a GPU in the chart), not in the job's driver."""
        import ray

        task = ray.remote(num_cpus=self.settings.cpus_per_worker, num_gpus=1 if self.settings.use_gpu else 0)(
            gate.evaluate_here
        )
        examples_ref: Any = ray.put(examples)  # sent once, read by every task
        tol = self.settings.gate.nsd_tolerance_mm
        return list(ray.get([task.remote(models, examples_ref, tol) for models in sets]))


def root_cause(exc: BaseException) -> str:
    """The innermost error's message: Ray wraps a worker's exception (and its traceback) in
    several layers; the last ``SomeError: message`` line is the one that matters."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Diverged): ", line)]
    text = errors[-1] if errors else (lines[-1] if lines else type(exc).__name__)
    return text[:500]
