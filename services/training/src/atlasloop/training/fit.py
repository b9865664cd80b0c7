"""Fine-tuning a run's members on the Ray cluster, from the run's Ray job (its driver is on the
cluster): the examples go once into Ray's object store,
Ray Train fits every member (``distributed.fit_members``) in a thread, and this thread turns the
workers' epoch reports into progress (loss, ETA) and ``training.progress`` events."""

from __future__ import annotations

import threading
from collections.abc import Callable

from atlasloop.training.distributed import MemberJob, fit_members
from atlasloop.training.learning import Example
from atlasloop.training.recipe import Recipe
from atlasloop.training.runs import RunRecord
from atlasloop.training.settings import TrainingSettings

EpochReport = Callable[[str, int, float, float], None]  # architecture, epoch, loss, eta_s


class FitFailed(Exception):
    """Ray Train did not finish; the cause is the worker's error."""


def fit(
    run: RunRecord,
    members: list[MemberJob],
    revised: list[Example],
    replay: list[Example],
    recipe: Recipe,
    settings: TrainingSettings,
    on_epoch: EpochReport,
) -> None:
    """Train every member; candidates land at ``layout.candidate_key(run, architecture)``."""
    import ray
    from ray.util.queue import Empty, Queue

    if not ray.is_initialized():
        ray.init()  # the Ray job's own cluster
    examples_ref = ray.put((revised, replay))
    progress = Queue(actor_options={"num_cpus": 0})
    outcome: dict[str, BaseException] = {}

    def run_fit() -> None:
        try:
            fit_members(
                run_id=run.run_id,
                members=members,
                examples_ref=examples_ref,
                recipe=recipe,
                progress=progress,
                s3=settings.s3.with_secrets(),
                num_workers=settings.num_workers,
                use_gpu=settings.use_gpu,
                cpus_per_worker=settings.cpus_per_worker,
                storage_path=settings.train_storage_path,
                torch_threads=settings.torch_threads,
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=run_fit, name=f"fit-{run.run_id}", daemon=True)
        thread.start()
        order = [m.architecture for m in members]
        while thread.is_alive() or not progress.empty():
            try:
                report = progress.get(timeout=0.5)
            except Empty:
                continue
            architecture, epoch = report["architecture"], report["epoch"]
            per_epoch = report["seconds"] / epoch
            members_left = len(order) - order.index(architecture) - 1
            eta = per_epoch * (recipe.epochs - epoch + recipe.epochs * members_left)
            on_epoch(architecture, epoch, report["loss"], eta)
        thread.join()
    finally:
        progress.shutdown()
    if "error" in outcome:
        raise FitFailed() from outcome["error"]
