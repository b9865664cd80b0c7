"""Which labels one run trains on, holds out and replays.

- **held out**: the frozen evaluation set (``Ledger.held_out``), never trained on;
- **site held out**: the approved cases set aside, per site, to evaluate on the sites the loop is
  labelling (``Ledger.assign_roles``), never trained on;
- **revised**: the newest approved revision per case among the revisions no run has consumed,
  outside both held-out sets;
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


class KeptForEvaluation(InvalidInput):
    """Every new approval was kept aside to evaluate on: the run has nothing new to train on, and
    those approvals count as seen (they do not trigger another run)."""

    def __init__(self, revisions: list[str]) -> None:
        super().__init__(
            f"the {len(revisions)} new approved revision(s) were kept aside to evaluate on the sites they come "
            "from; nothing new to train on until more are approved"
        )
        self.revisions = revisions


@dataclass(frozen=True)
class TrainingSet:
    held_out: list[LabelRef]
    site_held_out: list[LabelRef]
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
    if s.gate.site_held_out_fraction:
        sources: dict[str, str] = {}

        def site_of(case_id: str) -> str:
            if case_id not in sources:
                sources[case_id] = client.get_case(case_id).source
            return sources[case_id]

        ledger.assign_roles(site_of, s.gate.site_held_out_fraction, held)
    site_held_out = [ref for ref, _site in ledger.site_held_out()]
    held |= {ref.case_id for ref in site_held_out}
    pending = ledger.pending()
    revised = latest_labels_of(pending.values(), exclude=held)
    if not revised and not from_originals:
        if pending:
            raise KeptForEvaluation(sorted(pending))
        raise InvalidInput("no approved revisions since the last run: nothing new to train on")
    revised_cases = {ref.case_id for ref in revised}
    replay = [
        ref for ref in latest_labels(client, ledger.consumed().values()) if ref.case_id not in held | revised_cases
    ]
    if len(replay) > s.replay_max_cases:
        replay = sorted(random.Random(s.recipe.seed).sample(replay, s.replay_max_cases), key=lambda r: r.case_id)
    return TrainingSet(held_out, site_held_out, revised, replay, sorted(pending))
