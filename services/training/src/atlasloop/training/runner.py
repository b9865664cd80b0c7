"""Runs, one at a time: gather the labels, fine-tune every member on Ray Train, gate, publish.

A request while a run is active queues one follow-up run; further requests join that follow-up
(their trigger is appended) instead of piling up. Every state change is saved before the next
step, so after a restart a run that was mid-way is marked FAILED with that reason, and one whose
set had already become current is completed as PUBLISHED (its ``model.published`` is sent again;
consumers are idempotent).

Nothing is published unless the gate passes: a run that fails (unreadable labels, no approved
revisions, a diverged loss, a lost Ray worker) or is rejected leaves the current set current.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime

from atlasloop.common.errors import AtlasError, InvalidInput
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.ray_env import join_ray
from atlasloop.common.storage_client import StorageClient
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.preprocess import PreprocessConfig
from atlasloop.inference.predictor import InferenceConfig
from atlasloop.inference.registry import LoadedModel, ModelRegistry, load_into, read_state_dict, shared_preprocess
from atlasloop.training import gate
from atlasloop.training.data import load_examples
from atlasloop.training.distributed import candidate_key, fit_members
from atlasloop.training.ledger import LabelRef, Ledger, latest_labels
from atlasloop.training.recipe import Recipe
from atlasloop.training.runs import (
    EVALUATING,
    FAILED,
    PUBLISHED,
    QUEUED,
    REJECTED,
    RUNNING,
    TERMINAL,
    RunRecord,
    RunStore,
    new_run_id,
)
from atlasloop.training.settings import TrainingSettings

log = logging.getLogger(__name__)
KEEP_UPDATES = 50


class Runner:
    def __init__(self, settings: TrainingSettings, store: ObjectStore, producer: EventProducer,
                 client: Callable[[], StorageClient]) -> None:
        self.settings = settings
        self.store = store
        self.registry = ModelRegistry(store)
        self.runs = RunStore(store)
        self.ledger = Ledger(store)
        self._producer = producer
        self._client = client
        self._lock = threading.Lock()
        self._active: str = ""
        self._follow_up: str = ""
        self._updates: dict[str, list[dict]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    # ---- requests ----

    def request(self, trigger: str, from_originals: bool = False, overrides: dict | None = None) -> RunRecord:
        """Start a run now, or queue one follow-up behind the active run (joined by later requests)."""
        with self._lock:
            if self._follow_up:
                run = self.runs.get(self._follow_up)
                if trigger not in run.trigger.split("; "):
                    run.trigger += f"; {trigger}"
                run.from_originals |= from_originals
                run.overrides |= overrides or {}
                self.runs.save(run)
                return run
            run = RunRecord(new_run_id(), trigger, from_originals=from_originals, overrides=overrides or {})
            self.runs.save(run)
            self._publish(events_pb2.TrainingRequested(meta=new_meta("training"), run_id=run.run_id,
                                                       trigger=trigger), run.run_id)
            self._note(run)
            if self._active:
                self._follow_up = run.run_id
            else:
                self._start(run.run_id)
            return run

    def _start(self, run_id: str) -> None:
        self._active = run_id
        self._thread = threading.Thread(target=self._work, args=(run_id,), name=f"run-{run_id}", daemon=True)
        self._thread.start()

    def _work(self, run_id: str) -> None:
        while run_id:
            self._execute(self.runs.get(run_id))
            with self._lock:
                run_id, self._follow_up = self._follow_up, ""
                self._active = run_id

    def claimed(self) -> set[str]:
        """Approved revisions the active run trains on (not new for the next trigger)."""
        with self._lock:
            return set(self.runs.get(self._active).revisions) if self._active else set()

    def busy(self) -> bool:
        with self._lock:
            return bool(self._active)

    def recover(self) -> None:
        """After a restart: finish what can be finished, fail what was cut off, restart the queued."""
        queued = []
        for run in self.runs.list():
            if run.state in TERMINAL:
                continue
            if run.state == QUEUED:
                queued.append(run.run_id)
                continue
            candidate = f"set-{run.run_id}"
            if run.state == EVALUATING and self._current() == candidate:
                run.published_model_set = candidate
                self._finish(run, PUBLISHED, "published before a restart of the training service")
                self._announce(candidate, run.run_id)
            else:
                self._finish(run, FAILED, f"interrupted in state {run.state} by a restart of the training service")
        for run_id in sorted(queued):
            self.request_existing(run_id)

    def request_existing(self, run_id: str) -> None:
        with self._lock:
            if self._active:
                if not self._follow_up:
                    self._follow_up = run_id
                else:  # more than one queued before the restart: merge into the follow-up
                    self._finish(self.runs.get(run_id), FAILED, f"merged into queued run {self._follow_up}")
            else:
                self._start(run_id)

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.2)
        return not self.busy()

    # ---- progress ----

    def _note(self, run: RunRecord, **extra) -> None:
        with self._changed:
            updates = self._updates.setdefault(run.run_id, [])
            updates.append({"state": run.state, **extra})
            while len(self._updates) > KEEP_UPDATES:
                self._updates.pop(next(iter(self._updates)))
            self._changed.notify_all()

    def watch(self, run_id: str, poll_s: float = 1.0) -> Iterator[dict]:
        """Progress reports of a run until it ends (at least its final state)."""
        run = self.runs.get(run_id)
        seen = 0
        while True:
            with self._changed:
                updates = list(self._updates.get(run_id, []))
                if len(updates) == seen and not (updates and updates[-1]["state"] in TERMINAL):
                    self._changed.wait(poll_s)
                    updates = list(self._updates.get(run_id, []))
            yield from updates[seen:]
            seen = len(updates)
            if updates and updates[-1]["state"] in TERMINAL:
                return
            if not updates:  # a run from before this process started
                run = self.runs.get(run_id)
                if run.state in TERMINAL:
                    yield {"state": run.state}
                    return

    # ---- one run ----

    def _execute(self, run: RunRecord) -> None:
        self._started = started = time.monotonic()
        client = self._client()
        try:
            self._run(run, client)
        except AtlasError as exc:
            self._finish(run, FAILED, str(exc))
        except Exception as exc:  # a run must end recorded, whatever broke
            log.exception("training run failed", extra={"run_id": run.run_id})
            self._finish(run, FAILED, _root_cause(exc))
        finally:
            client.close()
            run.seconds = time.monotonic() - started
            self.runs.save(run)

    def _run(self, run: RunRecord, client: StorageClient) -> None:
        s = self.settings
        run.base_model_set = self._current()
        self._transition(run, RUNNING)
        held_out = self.ledger.held_out(client, s.gate.held_out_fraction, s.gate.held_out_max)
        if not held_out:
            raise InvalidInput("no human-labelled cases to hold out for the gate; import labelled cases first")
        held = {ref.case_id for ref in held_out}
        pending = self.ledger.pending()
        revised_refs = latest_labels_of(pending.values(), exclude=held)
        if not revised_refs and not run.from_originals:
            raise InvalidInput("no approved revisions since the last run: nothing new to train on")
        revised_cases = {ref.case_id for ref in revised_refs}
        replay_refs = [ref for ref in latest_labels(client, self.ledger.consumed().values())
                       if ref.case_id not in held | revised_cases]
        rng = random.Random(s.recipe.seed)
        if len(replay_refs) > s.replay_max_cases:
            replay_refs = sorted(rng.sample(replay_refs, s.replay_max_cases), key=lambda r: r.case_id)
        run.revisions = sorted(pending)
        run.held_out = [f"{r.case_id}/{r.label_version}" for r in held_out]
        run.label_versions = [f"{r.case_id}/{r.label_version}" for r in revised_refs + replay_refs]
        self.runs.save(run)
        base = self.registry.model_set(run.base_model_set)["members"]
        members, current = [], []
        for member in base:
            architecture, version = member["architecture"], member["version"]
            current.append(self.registry.load(architecture, version))  # verifies checksum, schema, config
            members.append({"architecture": architecture, "version": version, "base_version": version,
                            "size": current[-1].config.size,
                            "base_weights": self.store.get_bytes(f"models/{architecture}/{version}/weights.pt")})
        grid = shared_preprocess([m.manifest for m in current])  # candidates keep their base's grid
        revised, replay = load_examples(client, revised_refs, grid), load_examples(client, replay_refs, grid)
        if not revised and not replay:
            raise InvalidInput("no labelled cases outside the held-out set to train on")

        import ray
        from ray.util.queue import Queue

        join_ray(self.settings.ray.address, "atlasloop-training")
        examples_ref = ray.put((revised, replay))
        progress = Queue(actor_options={"num_cpus": 0})
        try:
            self._fit(run, members, examples_ref, progress)
        finally:
            progress.shutdown()
            del examples_ref
        candidates = []
        for model in current:
            key = candidate_key(run.run_id, model.architecture)
            module = load_into(model.config, read_state_dict(self.store.get_bytes(key), key), key)
            candidates.append(LoadedModel(model.architecture, run.run_id, model.config, module,
                                          {"base_version": model.version, "architecture": model.architecture,
                                           "version": run.run_id, "spacing_mm": model.manifest["spacing_mm"],
                                           "hu_window": model.manifest["hu_window"]}))
        self._transition(run, EVALUATING)
        self._gate_and_publish(run, current, candidates, held_out, replay, client, grid)

    def _fit(self, run: RunRecord, members: list[dict], examples_ref, progress) -> None:
        """Ray Train in a thread; this one turns the workers' epoch reports into progress."""
        from ray.util.queue import Empty

        s = self.settings
        recipe = self.recipe(run)
        outcome: dict = {}

        def fit() -> None:
            try:
                fit_members(run_id=run.run_id, members=members, examples_ref=examples_ref, recipe=recipe,
                            progress=progress, s3=_s3_args(s), num_workers=s.num_workers, use_gpu=s.use_gpu,
                            cpus_per_worker=s.cpus_per_worker, storage_path=s.train_storage_path,
                            torch_threads=s.torch_threads)
            except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
                outcome["error"] = exc

        thread = threading.Thread(target=fit, name=f"fit-{run.run_id}", daemon=True)
        thread.start()
        order = [m["architecture"] for m in members]
        epochs = recipe.epochs
        while thread.is_alive() or not progress.empty():
            try:
                report = progress.get(timeout=0.5)
            except Empty:
                continue
            architecture, epoch = report["architecture"], report["epoch"]
            run.losses.setdefault(architecture, []).append(report["loss"])
            per_epoch = report["seconds"] / epoch
            members_left = len(order) - order.index(architecture) - 1
            eta = per_epoch * (epochs - epoch + epochs * members_left)
            self._note(run, architecture=architecture, epoch=epoch, loss=report["loss"], eta_s=eta)
            self._publish(events_pb2.TrainingProgress(meta=new_meta("training"), run_id=run.run_id,
                                                      architecture=architecture, epoch=epoch,
                                                      loss=report["loss"]), run.run_id)
        thread.join()
        self.runs.save(run)
        if "error" in outcome:
            raise InvalidInput(f"training failed: {_root_cause(outcome['error'])}")

    def _gate_and_publish(self, run: RunRecord, current: list[LoadedModel], candidates: list[LoadedModel],
                          held_out: list[LabelRef], replay, client: StorageClient, grid: PreprocessConfig) -> None:
        s = self.settings
        cfg = InferenceConfig(overlap=0.25, sw_batch_size=2)
        held_examples = load_examples(client, held_out, grid)
        tol = s.gate.nsd_tolerance_mm
        before = gate.evaluate(current, held_examples, cfg, tol)
        after = gate.evaluate(candidates, held_examples, cfg, tol)
        run.current_metrics = {o: asdict(v) for o, v in before.items()}
        run.candidate_metrics = {o: asdict(v) for o, v in after.items()}
        replay_before = replay_after = None
        if s.gate.replay_eval_cases and replay:
            sample = replay[: s.gate.replay_eval_cases]
            replay_before = gate.evaluate(current, sample, cfg, tol)
            replay_after = gate.evaluate(candidates, sample, cfg, tol)
            run.replay_metrics = {"current": gate.mean_dice(replay_before), "candidate": gate.mean_dice(replay_after)}
        self._note(run, validation=run.candidate_metrics)
        decision = gate.decide(before, after, s.gate.margin, s.gate.min_improvement, replay_before, replay_after)
        self.ledger.consume(run.revisions, run.run_id)  # judged: these labels are no longer new
        if not decision.passed:
            self._finish(run, REJECTED, decision.reason)
            return
        published = self._publish_set(run, candidates)
        run.published_model_set = published
        reason = decision.reason
        try:
            self._announce(published, run.run_id)
        except Exception as exc:  # noqa: BLE001 - the set is current either way; say so rather than fail the run
            reason += f"; model.published not delivered ({type(exc).__name__}): roll back or re-announce"
        self._finish(run, PUBLISHED, reason)

    def _publish_set(self, run: RunRecord, candidates: list[LoadedModel]) -> str:
        provenance = {"run_id": run.run_id, "base_model_set": run.base_model_set, "trigger": run.trigger,
                      "label_versions": run.label_versions, "revisions": run.revisions,
                      "recipe": self.recipe(run).model_dump()}
        members = []
        for candidate in candidates:
            key = candidate_key(run.run_id, candidate.architecture)
            self.registry.register(candidate.architecture, candidate.config.size, self.store.get_bytes(key),
                                   provenance | {"base_version": candidate.manifest["base_version"]},
                                   {"held_out": run.candidate_metrics}, version=run.run_id,
                                   preprocess=candidate.preprocess)
            members.append((candidate.architecture, run.run_id))
        return self.registry.create_set(members, make_current=True, version=f"set-{run.run_id}")["version"]

    def recipe(self, run: RunRecord) -> Recipe:
        """The configured recipe with this run's overrides, validated again."""
        return Recipe.model_validate(self.settings.recipe.model_dump() | run.overrides)

    # ---- admin ----

    def rollback(self, model_set: str, reason: str) -> str:
        if not reason:
            raise InvalidInput("a rollback needs a reason for the audit log")
        if self.busy():
            log.warning("rollback while a run is active; its candidate is still gated against its own base")
        self.registry.set_current(model_set)  # NotFound for an unknown set
        log.info("model set rolled back", extra={"model_set": model_set, "reason": reason})
        self._announce(model_set, "")
        return model_set

    # ---- helpers ----

    def _current(self) -> str:
        return self.registry.current()

    def _transition(self, run: RunRecord, state: str) -> None:
        run.state = state
        self.runs.save(run)
        self._note(run)

    def _finish(self, run: RunRecord, state: str, reason: str) -> None:
        run.state, run.reason = state, reason
        if run.run_id == self._active:
            run.seconds = time.monotonic() - self._started
        run.finished_at = datetime.now(UTC).isoformat()
        self.runs.save(run)
        log.info("training run ended", extra={"run_id": run.run_id, "state": state, "reason": reason})
        self._publish(events_pb2.TrainingCompleted(meta=new_meta("training"), run_id=run.run_id,
                                                   passed_gate=state == PUBLISHED, reason=reason), run.run_id)
        self._note(run, reason=reason)

    def _announce(self, model_set: str, run_id: str) -> None:
        self._publish(events_pb2.ModelPublished(meta=new_meta("training"), model_set=model_set, run_id=run_id),
                      "model-set")

    def _publish(self, event, key: str) -> None:
        try:
            self._producer.publish(event, key=key)
        except Exception:  # progress must not fail a run; model.published failures are the caller's
            if isinstance(event, events_pb2.ModelPublished):
                raise
            log.warning("could not publish event", extra={"event": type(event).__name__})


def latest_labels_of(approvals, exclude: set[str]) -> list[LabelRef]:
    """The newest approved label per case, leaving out ``exclude`` (the held-out cases)."""
    by_case = {a["case_id"]: LabelRef(a["case_id"], a["label_version"]) for a in approvals}
    return sorted((r for c, r in by_case.items() if c not in exclude), key=lambda r: r.case_id)


def _s3_args(settings: TrainingSettings) -> dict:
    s3 = settings.s3
    return s3.model_dump(mode="json") | {"access_key": s3.access_key.get_secret_value(),
                                         "secret_key": s3.secret_key.get_secret_value()}


def _root_cause(exc: BaseException) -> str:
    """The innermost error's message: Ray wraps a worker's exception (and its traceback) in
    several layers; the last ``SomeError: message`` line is the one that matters."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Diverged): ", line)]
    text = errors[-1] if errors else (lines[-1] if lines else type(exc).__name__)
    return text[:500]
