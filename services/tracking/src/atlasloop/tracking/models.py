"""The annotation database: the system of record of the loop (SQLAlchemy 2 models).

PostgreSQL in production and tests; SQLite runs the same code for a one-machine demo. The schema
is created and upgraded only by the Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON, list: JSON}


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(Text, default="")
    geometry: Mapped[dict] = mapped_column(default=dict)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    current_label_version: Mapped[str] = mapped_column(String(64), default="")
    ai_label_version: Mapped[str] = mapped_column(String(64), default="")
    model_set: Mapped[str] = mapped_column(String(64), default="")
    round: Mapped[int] = mapped_column(Integer, default=0)
    trace_context: Mapped[dict] = mapped_column(default=dict)  # W3C headers of the case's trace (its import)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LabelVersion(Base):
    __tablename__ = "label_versions"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # original | ai | human
    parent_version: Mapped[str] = mapped_column(String(64), default="")
    model_set: Mapped[str] = mapped_column(String(64), default="")
    round: Mapped[int] = mapped_column(Integer, default=0)
    object_key: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    organ_provenance: Mapped[dict] = mapped_column(default=dict)  # organ -> "ai" | "human:<revision>"
    author: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("case_id", "model_set", "organ"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    model_set: Mapped[str] = mapped_column(String(64))
    round: Mapped[int] = mapped_column(Integer, default=0)
    organ: Mapped[str] = mapped_column(String(32))
    attention: Mapped[float] = mapped_column(Float)
    heat_sum: Mapped[float] = mapped_column(Float)


class QueueEntry(Base):
    __tablename__ = "queue_entries"
    __table_args__ = (
        UniqueConstraint("case_id", "round"),
        # NextCase walks the queue in this order and stops at the first free case.
        Index("ix_queue_entries_priority", text("priority DESC"), "case_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    priority: Mapped[float] = mapped_column(Float)
    organs: Mapped[list] = mapped_column(default=list)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)


class DoubleRead(Base):
    """An approved case sampled for a second, independent annotator (inter-annotator agreement)."""

    __tablename__ = "double_reads"
    __table_args__ = (UniqueConstraint("case_id", "round"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    priority: Mapped[float] = mapped_column(Float)
    organs: Mapped[list] = mapped_column(default=list)
    first_revision_id: Mapped[str] = mapped_column(ForeignKey("revisions.id"))
    first_annotator: Mapped[str] = mapped_column(String(200))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    __tablename__ = "leases"
    __table_args__ = (
        # The database, not the process, guarantees one holder per case: at most one active lease.
        Index(
            "ux_leases_one_active_per_case",
            "case_id",
            unique=True,
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
        Index("ix_leases_active_expiry", "expires_at", postgresql_where=text("active"), sqlite_where=text("active")),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    ended: Mapped[str] = mapped_column(String(16), default="")  # released | expired | submitted
    label_version: Mapped[str] = mapped_column(String(64), default="")  # what the annotator starts from
    organs: Mapped[list] = mapped_column(default=list)  # to revise, most salient first
    double_read: Mapped[bool] = mapped_column(Boolean, default=False)


class Revision(Base):
    __tablename__ = "revisions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"))
    annotator: Mapped[str] = mapped_column(String(200), index=True)
    round: Mapped[int] = mapped_column(Integer)
    label_version: Mapped[str] = mapped_column(ForeignKey("label_versions.version"))
    parent_version: Mapped[str] = mapped_column(String(64))
    organs: Mapped[list] = mapped_column(default=list)
    diffs: Mapped[list] = mapped_column(default=list)
    seconds_spent: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    review_state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16), default="revision", server_default="revision")  # | double_read
    # The upload the label came from: the same submission retried returns this revision.
    upload_id: Mapped[str] = mapped_column(String(64), default="", server_default="")


class Agreement(Base):
    """Inter-annotator agreement: a double read against the approved revision, per organ."""

    __tablename__ = "agreements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    first_revision_id: Mapped[str] = mapped_column(ForeignKey("revisions.id"))
    second_revision_id: Mapped[str] = mapped_column(ForeignKey("revisions.id"))
    organ: Mapped[str] = mapped_column(String(32))
    dice: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RevisionTag(Base):
    __tablename__ = "revision_tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    revision_id: Mapped[str] = mapped_column(ForeignKey("revisions.id"), index=True)
    organ: Mapped[str] = mapped_column(String(32))
    tag: Mapped[str] = mapped_column(String(32))
    suggested: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    region: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class RegionVerdict(Base):
    """An annotator's verdict on one attention region they were shown, stored with the revision."""

    __tablename__ = "region_verdicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    revision_id: Mapped[str] = mapped_column(ForeignKey("revisions.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    organ: Mapped[str] = mapped_column(String(32))
    min_mm: Mapped[list] = mapped_column(default=list)
    max_mm: Mapped[list] = mapped_column(default=list)
    verdict: Mapped[str] = mapped_column(String(16))  # a RegionVerdictKind


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    revision_id: Mapped[str] = mapped_column(ForeignKey("revisions.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    annotator_errors: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(Text, default="")
    base_model_set: Mapped[str] = mapped_column(String(64), default="")
    published_model_set: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelSet(Base):
    __tablename__ = "model_sets"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    run_id: Mapped[str] = mapped_column(String(64), default="")
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Append-only: on PostgreSQL a trigger refuses UPDATE and DELETE."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    principal: Mapped[str] = mapped_column(String(200))
    case_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    action: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict] = mapped_column(default=dict)


class OutboxEvent(Base):
    """Events written in the same transaction as the change they announce; a relay publishes them."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    trace_context: Mapped[dict] = mapped_column(default=dict)  # W3C headers the event travels with
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ProcessedEvent(Base):
    """Consumed events, recorded in the transaction that applied them (idempotent consumers)."""

    __tablename__ = "processed_events"
    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Release(Base):
    """A frozen dataset release; with its cases, append-only on PostgreSQL (a trigger refuses
    UPDATE and DELETE), so a name always means the same data."""

    __tablename__ = "releases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # creation order
    name: Mapped[str] = mapped_column(String(100), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    previous: Mapped[str] = mapped_column(String(100), default="")
    created_by: Mapped[str] = mapped_column(String(200))
    classes: Mapped[dict] = mapped_column(default=dict)  # voxel value (as text) -> structure name
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReleaseCase(Base):
    __tablename__ = "release_cases"
    __table_args__ = (UniqueConstraint("release_id", "case_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    case_id: Mapped[str] = mapped_column(String(64))
    label_version: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # human | original | ai
    model_set: Mapped[str] = mapped_column(String(64), default="")
    revision_id: Mapped[str] = mapped_column(String(40), default="")
    round: Mapped[int] = mapped_column(Integer, default=0)
