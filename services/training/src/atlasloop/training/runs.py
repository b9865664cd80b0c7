"""Training run records, one JSON document per run in object storage
(``training/runs/<run_id>/run.json``), rewritten at every state change so a restarted service
knows what each run reached."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from atlasloop.common.errors import NotFound
from atlasloop.common.objectstore import ObjectStore

QUEUED, RUNNING, EVALUATING, PUBLISHED, REJECTED, FAILED = (
    "QUEUED", "RUNNING", "EVALUATING", "PUBLISHED", "REJECTED", "FAILED")
TERMINAL = {PUBLISHED, REJECTED, FAILED}


def new_run_id() -> str:
    return "run-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


@dataclass
class RunRecord:
    run_id: str
    trigger: str
    state: str = QUEUED
    base_model_set: str = ""
    published_model_set: str = ""
    reason: str = ""
    from_originals: bool = False
    overrides: dict = field(default_factory=dict)  # recipe fields for this run only
    current_metrics: dict = field(default_factory=dict)  # organ -> {"dice", "nsd"}, held-out set
    candidate_metrics: dict = field(default_factory=dict)
    replay_metrics: dict = field(default_factory=dict)  # {"current": mean Dice, "candidate": mean Dice}
    revisions: list = field(default_factory=list)  # approved revision ids trained on
    label_versions: list = field(default_factory=list)  # "case/version" of every training label
    held_out: list = field(default_factory=list)
    losses: dict = field(default_factory=dict)  # architecture -> loss per epoch
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str = ""
    seconds: float = 0.0


class RunStore:
    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    @staticmethod
    def _key(run_id: str) -> str:
        return f"training/runs/{run_id}/run.json"

    def save(self, run: RunRecord) -> None:
        self._store.put_json(self._key(run.run_id), asdict(run))

    def get(self, run_id: str) -> RunRecord:
        if not run_id or "/" in run_id:
            raise NotFound(f"run {run_id!r} does not exist")
        try:
            return RunRecord(**self._store.get_json(self._key(run_id)))  # type: ignore[arg-type]
        except NotFound:
            raise NotFound(f"run {run_id!r} does not exist") from None

    def list(self) -> list[RunRecord]:
        """Every run, newest first."""
        ids = {k.split("/")[2] for k in self._store.list_keys("training/runs/") if k.endswith("/run.json")}
        return [self.get(run_id) for run_id in sorted(ids, reverse=True)]
