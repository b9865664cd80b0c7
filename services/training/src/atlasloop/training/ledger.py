"""What the training service knows about labels, kept in object storage under ``training/``.

``training/ledger.json`` records every approved revision once (keyed by revision id, so a
redelivered ``annotation.approved`` counts once): its case, label version and organs, and the run
that consumed it. Revisions not yet consumed are the *pending* ones that triggers count and the
next run trains on; consumed ones join the replay pool. A revision whose label cannot be loaded
(deleted, corrupt, off its CT's grid) is *quarantined* with the reason: it leaves both, so one bad
label never fails every later run.

``training/held-out.json`` is the frozen evaluation set: chosen once, at the first run, from the
labelled cases (imported originals and approved revisions), by a stable hash of the case id; its
cases are never trained on, so every gate compares sets on the same unseen labels.

The frozen set comes from the sites labelled before the loop began, so it cannot see whether a
candidate got better where the loop is labelling. Each approved case therefore gets a *role* the
first time a run sees it: ``evaluate`` for a share of every site's approved cases (the first, and
then one in every ``1 / fraction``, in a stable hash order of the new cases, not in approval
order: see :func:`with_roles`; the site is the case's import ``source``), or ``train``. A case
keeps its role; evaluation cases are never trained on or replayed, and the gate scores both sets
on them (``site_held_out``).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from atlasloop.common import layout
from atlasloop.common.domain import LabelSource
from atlasloop.common.errors import NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.storage_client import StorageClient

TRAIN, EVALUATE = "train", "evaluate"


@dataclass(frozen=True)
class LabelRef:
    case_id: str
    label_version: str

    def __str__(self) -> str:
        return f"{self.case_id}/{self.label_version}"


@dataclass(frozen=True)
class Approval:
    """One approved revision as the ledger records it; ``run`` is the run that consumed it."""

    case_id: str
    label_version: str
    organs: tuple[str, ...]
    run: str = ""
    quarantined: str = ""  # why its label cannot be used
    role: str = ""  # "train" or "evaluate" once a run has seen it; "" before
    site: str = ""

    @property
    def ref(self) -> LabelRef:
        return LabelRef(self.case_id, self.label_version)

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"organs": list(self.organs)}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Approval:
        return cls(
            document["case_id"],
            document["label_version"],
            tuple(document["organs"]),
            document["run"],
            document.get("quarantined", ""),
            document.get("role", ""),
            document.get("site", ""),
        )


class Ledger:
    """Approved revisions and the frozen held-out set; safe to call from several threads."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Approval]:
        try:
            document = self._store.get_json(layout.LEDGER)
        except NotFound:
            return {}
        return {k: Approval.from_json(v) for k, v in document["approved"].items()}

    def _write(self, approved: dict[str, Approval]) -> None:
        self._store.put_json(layout.LEDGER, {"approved": {k: a.as_json() for k, a in approved.items()}})

    def record_approval(self, revision_id: str, case_id: str, label_version: str, organs: list[str]) -> bool:
        """Record an approval; False when this revision was recorded before (a redelivery)."""
        with self._lock:
            approved = self._read()
            if revision_id in approved:
                return False
            approved[revision_id] = Approval(case_id, label_version, tuple(sorted(organs)))
            self._write(approved)
            return True

    def pending(self) -> dict[str, Approval]:
        """Approved revisions no run has consumed, by revision id."""
        return {k: a for k, a in self._read().items() if not a.run and not a.quarantined}

    def consumed(self) -> dict[str, Approval]:
        """Approved revisions a run has trained on (the replay pool): not the evaluation cases."""
        return {k: a for k, a in self._read().items() if a.run and not a.quarantined and a.role != EVALUATE}

    def assign_roles(self, site_of: Callable[[str], str], fraction: float, frozen: set[str]) -> None:
        """Give every approval without one its case's role (module docstring); ``frozen``: the
        frozen held-out cases (never trained on anyway, so never an evaluation case of a site)."""
        with self._lock:
            approved = self._read()
            assigned = with_roles(approved, site_of, fraction, frozen)
            if assigned != approved:
                self._write(assigned)

    def site_held_out(self) -> list[tuple[LabelRef, str]]:
        """The evaluation cases of the labelled-by-the-loop sites: (newest approved label, site)."""
        newest = {a.case_id: (a.ref, a.site) for a in self._read().values() if a.role == EVALUATE and not a.quarantined}
        return sorted(newest.values(), key=lambda item: item[0].case_id)

    def quarantined(self) -> dict[str, Approval]:
        return {k: a for k, a in self._read().items() if a.quarantined}

    def quarantine(self, ref: LabelRef, reason: str) -> list[str]:
        """Set aside every approval of ``ref`` with ``reason``; the revision ids set aside."""
        with self._lock:
            approved = self._read()
            hit = [k for k, a in approved.items() if a.ref == ref and not a.quarantined]
            for revision_id in hit:
                approved[revision_id] = replace(approved[revision_id], quarantined=reason[:500])
            if hit:
                self._write(approved)
            return hit

    def consume(self, revision_ids: list[str], run_id: str) -> None:
        """Mark revisions as trained on by ``run_id`` (after a run that used them ended)."""
        with self._lock:
            approved = self._read()
            for revision_id in revision_ids:
                approved[revision_id] = replace(approved[revision_id], run=run_id)
            self._write(approved)

    def held_out(self, client: StorageClient, fraction: float, most: int) -> list[LabelRef]:
        """The frozen held-out set; chosen and stored on first use."""
        with self._lock:
            try:
                return [LabelRef(**r) for r in self._store.get_json(layout.HELD_OUT)["cases"]]
            except NotFound:
                pass
            labelled = latest_labels(client, self._read().values())
            ranked = sorted(labelled, key=lambda ref: case_rank(ref.case_id))
            count = min(most, max(1, round(fraction * len(ranked)))) if ranked else 0
            chosen = ranked[:count]
            if chosen:
                self._store.put_json(layout.HELD_OUT, {"cases": [asdict(ref) for ref in chosen]})
            return chosen


def with_roles(
    approved: dict[str, Approval], site_of: Callable[[str], str], fraction: float, frozen: set[str]
) -> dict[str, Approval]:
    """``approved`` with a role for every approval: its case's, or for cases seen for the first time,
    ``evaluate`` for each site's first, (1 + 1/fraction)-th, ... new case in :func:`case_rank` order.

    Not in approval order: the queue hands out the most salient cases first, so a site's first
    approved case is the one the ensemble did worst on, and a held-out set of those would be a
    biased sample. Nor in the order the events arrived: they are keyed by case, so they come from
    different partitions in no fixed order, and two identical runs would hold out different cases
    (the demo's gate decisions differed between runs of the same code because of it)."""
    roles = {a.case_id: (a.role, a.site) for a in approved.values() if a.role}
    per_site: dict[str, int] = {}
    for _role, site in roles.values():
        per_site[site] = per_site.get(site, 0) + 1
    new_cases = {a.case_id for a in approved.values() if not a.role and not a.quarantined} - roles.keys()
    for case_id in sorted(new_cases, key=case_rank):
        site = site_of(case_id)
        k = per_site.get(site, 0)
        held = case_id not in frozen and math.ceil((k + 1) * fraction) > math.ceil(k * fraction)
        roles[case_id] = (EVALUATE if held else TRAIN, site)
        per_site[site] = k + 1
    out = {}
    for revision_id, approval in approved.items():
        if approval.role or approval.quarantined:
            out[revision_id] = approval
            continue
        role, site = roles[approval.case_id]
        out[revision_id] = replace(approval, role=role, site=site)
    return out


def case_rank(case_id: str) -> str:
    """A case's place in a stable pseudo-random order (the same on every run and machine)."""
    return hashlib.sha256(case_id.encode()).hexdigest()


def original_labels(client: StorageClient) -> list[LabelRef]:
    """Each case's imported original label version, where it has one."""
    refs = []
    for case_id in client.case_ids():
        originals = [
            v for v in client.label_versions(case_id) if LabelSource.from_proto(v.source) is LabelSource.ORIGINAL
        ]
        if originals:
            refs.append(LabelRef(case_id, originals[-1].label_version))
    return refs


def latest_labels(client: StorageClient, approvals: Iterable[Approval]) -> list[LabelRef]:
    """One human label per case: its newest approved revision, else its original label."""
    by_case = {ref.case_id: ref for ref in original_labels(client)}
    for approval in approvals:
        by_case[approval.case_id] = approval.ref
    return sorted(by_case.values(), key=lambda ref: ref.case_id)
