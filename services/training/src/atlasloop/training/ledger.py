"""What the training service knows about labels, kept in object storage under ``training/``.

``training/ledger.json`` records every approved revision once (keyed by revision id, so a
redelivered ``annotation.approved`` counts once): its case, label version and organs, and the run
that consumed it. Revisions not yet consumed are the *pending* ones that triggers count and the
next run trains on; consumed ones join the replay pool.

``training/held-out.json`` is the frozen evaluation set: chosen once, at the first run, from the
labelled cases (imported originals and approved revisions), by a stable hash of the case id; its
cases are never trained on, so every gate compares sets on the same unseen labels.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from atlasloop.common.errors import NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.storage_client import StorageClient
from atlasloop.common.v1 import common_pb2

LEDGER = "training/ledger.json"
HELD_OUT = "training/held-out.json"


@dataclass(frozen=True)
class LabelRef:
    case_id: str
    label_version: str


class Ledger:
    """Approved revisions and the frozen held-out set; safe to call from several threads."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    def _read(self) -> dict:
        try:
            return self._store.get_json(LEDGER)  # type: ignore[return-value]
        except NotFound:
            return {"approved": {}}

    def record_approval(self, revision_id: str, case_id: str, label_version: str, organs: list[str]) -> bool:
        """Record an approval; False when this revision was recorded before (a redelivery)."""
        with self._lock:
            ledger = self._read()
            if revision_id in ledger["approved"]:
                return False
            ledger["approved"][revision_id] = {"case_id": case_id, "label_version": label_version,
                                               "organs": sorted(organs), "run": ""}
            self._store.put_json(LEDGER, ledger)
            return True

    def pending(self) -> dict[str, dict]:
        """Approved revisions no run has consumed, by revision id."""
        return {k: v for k, v in self._read()["approved"].items() if not v["run"]}

    def consumed(self) -> dict[str, dict]:
        return {k: v for k, v in self._read()["approved"].items() if v["run"]}

    def consume(self, revision_ids: list[str], run_id: str) -> None:
        """Mark revisions as trained on by ``run_id`` (after a run that used them ended)."""
        with self._lock:
            ledger = self._read()
            for revision_id in revision_ids:
                ledger["approved"][revision_id]["run"] = run_id
            self._store.put_json(LEDGER, ledger)

    def held_out(self, client: StorageClient, fraction: float, most: int) -> list[LabelRef]:
        """The frozen held-out set; chosen and stored on first use."""
        with self._lock:
            try:
                return [LabelRef(**r) for r in self._store.get_json(HELD_OUT)["cases"]]  # type: ignore[index]
            except NotFound:
                pass
            labelled = latest_labels(client, self._read()["approved"].values())
            ranked = sorted(labelled, key=lambda ref: hashlib.sha256(ref.case_id.encode()).hexdigest())
            count = min(most, max(1, round(fraction * len(ranked)))) if ranked else 0
            chosen = ranked[:count]
            if chosen:
                self._store.put_json(HELD_OUT, {"cases": [ref.__dict__ for ref in chosen]})
            return chosen


def original_labels(client: StorageClient) -> list[LabelRef]:
    """Each case's imported original label version, where it has one."""
    refs = []
    for case_id in client.case_ids():
        originals = [v for v in client.label_versions(case_id) if v.source == common_pb2.LABEL_SOURCE_ORIGINAL]
        if originals:
            refs.append(LabelRef(case_id, originals[-1].label_version))
    return refs


def latest_labels(client: StorageClient, approvals) -> list[LabelRef]:
    """One human label per case: its newest approved revision, else its original label."""
    by_case = {ref.case_id: ref for ref in original_labels(client)}
    for approval in approvals:
        by_case[approval["case_id"]] = LabelRef(approval["case_id"], approval["label_version"])
    return sorted(by_case.values(), key=lambda ref: ref.case_id)
