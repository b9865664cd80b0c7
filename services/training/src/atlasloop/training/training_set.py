"""Which labels one run trains on, holds out and replays.

- **held out**: the frozen evaluation set (``Ledger.held_out``), never trained on;
- **revised**: the newest approved revision per case among the revisions no run has consumed,
  outside the held-out cases;
- **replay**: earlier human labels (originals and consumed approvals), outside the held-out and the
  revised cases, a seeded sample of at most ``replay_max_cases``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from atlasloop.common.errors import InvalidInput
from atlasloop.common.storage_client import StorageClient
from atlasloop.training.ledger import Approval, LabelRef, Ledger, latest_labels
from atlasloop.training.settings import TrainingSettings


@dataclass(frozen=True)
class TrainingSet:
    held_out: list[LabelRef]
    revised: list[LabelRef]
    replay: list[LabelRef]
    revisions: list[str]  # the approved revision ids this run consumes


def latest_labels_of(approvals: Iterable[Approval], exclude: set[str]) -> list[LabelRef]:
    """The newest approved label per case, leaving out ``exclude`` (the held-out cases)."""
    by_case = {a.case_id: a.ref for a in approvals}
    return sorted((r for c, r in by_case.items() if c not in exclude), key=lambda r: r.case_id)


def choose(ledger: Ledger, client: StorageClient, settings: TrainingSettings, from_originals: bool) -> TrainingSet:
    s = settings
    held_out = ledger.held_out(client, s.gate.held_out_fraction, s.gate.held_out_max)
    if not held_out:
        raise InvalidInput("no human-labelled cases to hold out for the gate; import labelled cases first")
    held = {ref.case_id for ref in held_out}
    pending = ledger.pending()
    revised = latest_labels_of(pending.values(), exclude=held)
    if not revised and not from_originals:
        raise InvalidInput("no approved revisions since the last run: nothing new to train on")
    revised_cases = {ref.case_id for ref in revised}
    replay = [
        ref for ref in latest_labels(client, ledger.consumed().values()) if ref.case_id not in held | revised_cases
    ]
    if len(replay) > s.replay_max_cases:
        replay = sorted(random.Random(s.recipe.seed).sample(replay, s.replay_max_cases), key=lambda r: r.case_id)
    return TrainingSet(held_out, revised, replay, sorted(pending))
