"""Loop statistics for viewers and the report: per round and organ, minutes, annotators."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from atlasloop.common.domain import RegionVerdictKind
from atlasloop.tracking.models import Agreement, Case, RegionVerdict, Revision, RevisionTag


@dataclass
class OrganRound:
    round: int
    organ: str
    cases_revised: int = 0
    voxels_changed: int = 0
    dice_sum: float = 0.0
    tag_counts: dict[str, int] = field(default_factory=dict)
    double_reads: int = 0
    agreement_sum: float = 0.0
    regions_fixed: int = 0
    regions_not_an_error: int = 0

    @property
    def double_read_dice(self) -> float:
        return self.agreement_sum / self.double_reads if self.double_reads else 0.0

    @property
    def mean_dice(self) -> float:
        return self.dice_sum / self.cases_revised if self.cases_revised else 1.0


@dataclass
class Statistics:
    organs: list[OrganRound]
    minutes_per_round: dict[int, float]
    revisions_per_annotator: dict[str, int]


def statistics(sessions: sessionmaker[Session], project_id: str = "") -> Statistics:
    with sessions() as session:
        query = select(Revision).where(Revision.kind == "revision")
        if project_id:
            query = query.join(Case, Case.id == Revision.case_id).where(Case.project_id == project_id)
        revisions = session.scalars(query).all()
        tags = session.execute(
            select(RevisionTag.revision_id, RevisionTag.organ, RevisionTag.tag).where(RevisionTag.confirmed)
        ).all()
        agreements = session.execute(select(Agreement.round, Agreement.organ, Agreement.dice)).all()
        verdicts = session.execute(select(RegionVerdict.revision_id, RegionVerdict.organ, RegionVerdict.verdict)).all()
    rounds_of = {r.id: r.round for r in revisions}
    table: dict[tuple[int, str], OrganRound] = {}
    minutes: dict[int, float] = defaultdict(float)
    per_annotator: dict[str, int] = defaultdict(int)
    for revision in revisions:
        minutes[revision.round] += revision.seconds_spent / 60.0
        per_annotator[revision.annotator] += 1
        for diff in revision.diffs:
            changed = diff["voxels_added"] + diff["voxels_removed"]
            if not changed:
                continue
            row = table.setdefault((revision.round, diff["organ"]), OrganRound(revision.round, diff["organ"]))
            row.cases_revised += 1
            row.voxels_changed += changed
            row.dice_sum += diff["dice"]
    for revision_id, organ, tag in tags:
        if revision_id in rounds_of:
            key = (rounds_of[revision_id], organ)
            row = table.setdefault(key, OrganRound(*key))
            row.tag_counts[tag] = row.tag_counts.get(tag, 0) + 1
    for revision_id, organ, verdict in verdicts:
        if revision_id in rounds_of:
            key = (rounds_of[revision_id], organ)
            row = table.setdefault(key, OrganRound(*key))
            if verdict == RegionVerdictKind.FIXED:
                row.regions_fixed += 1
            else:
                row.regions_not_an_error += 1
    for round_, organ, value in agreements:
        row = table.setdefault((round_, organ), OrganRound(round_, organ))
        row.double_reads += 1
        row.agreement_sum += value
    return Statistics(sorted(table.values(), key=lambda r: (r.round, r.organ)), dict(minutes), dict(per_annotator))
