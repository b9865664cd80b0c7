"""Training run records, one JSON document per run in object storage
(``training/runs/<run_id>/run.json``), rewritten at every state change so a restarted service
knows what each run reached (docs/adr/0005-run-records-in-s3.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from atlasloop.common import layout
from atlasloop.common.domain import RunState
from atlasloop.common.errors import NotFound
from atlasloop.common.objectstore import ObjectStore


def new_run_id() -> str:
    return "run-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


@dataclass(frozen=True)
class OrganScore:
    dice: float
    nsd: float


@dataclass
class RunRecord:
    run_id: str
    trigger: str
    state: RunState = RunState.QUEUED
    base_model_set: str = ""
    published_model_set: str = ""
    reason: str = ""
    from_originals: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe fields for this run only
    current_metrics: dict[str, OrganScore] = field(default_factory=dict)  # organ -> held-out score
    candidate_metrics: dict[str, OrganScore] = field(default_factory=dict)
    site_current_metrics: dict[str, OrganScore] = field(default_factory=dict)  # on the site held-out cases
    site_candidate_metrics: dict[str, OrganScore] = field(default_factory=dict)
    replay_metrics: dict[str, float] = field(default_factory=dict)  # {"current": mean Dice, "candidate": ...}
    revisions: list[str] = field(default_factory=list)  # approved revision ids trained on
    label_versions: list[str] = field(default_factory=list)  # "case/version" of every training label
    held_out: list[str] = field(default_factory=list)
    site_held_out: list[str] = field(default_factory=list)  # "case/version" of the site held-out cases
    quarantined: dict[str, str] = field(default_factory=dict)  # "case/version" -> why it was set aside
    losses: dict[str, list[float]] = field(default_factory=dict)  # architecture -> loss per epoch
    # architecture -> organ -> {temperature, ece_before, ece_after, held_out, voxels} of the published members
    calibration: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # organ -> the published set's expected-Dice offset (atlasloop.method.improved), fitted on held-out cases
    expected_dice_offsets: dict[str, float] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)  # the latest epoch: architecture, epoch, loss, eta_s
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str = ""
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"state": self.state.value}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RunRecord:
        scores = {
            k: {o: OrganScore(**s) for o, s in document.get(k, {}).items()}
            for k in ("current_metrics", "candidate_metrics", "site_current_metrics", "site_candidate_metrics")
        }
        # records written before the state enum used upper-case names
        return cls(**(document | scores | {"state": RunState(str(document["state"]).lower())}))


class RunStore:
    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def save(self, run: RunRecord) -> None:
        self._store.put_json(layout.run_key(run.run_id), run.as_json())

    def get(self, run_id: str) -> RunRecord:
        layout.segment("run id", run_id)  # InvalidInput before any key is built
        try:
            return RunRecord.from_json(self._store.get_json(layout.run_key(run_id)))
        except NotFound:
            raise NotFound(f"run {run_id!r} does not exist") from None

    def list(self) -> list[RunRecord]:
        """Every run, newest first."""
        ids = {layout.run_id_of(k) for k in self._store.list_keys(layout.TRAINING_RUNS) if k.endswith("/run.json")}
        return [self.get(run_id) for run_id in sorted(ids, reverse=True)]
