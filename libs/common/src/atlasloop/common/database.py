"""SQLAlchemy engines for PostgreSQL (production, tests) and SQLite (one-machine demo)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from atlasloop.common.settings import DatabaseSettings


def make_engine(settings: DatabaseSettings) -> Engine:
    """An engine whose calls end when the database does not answer: connecting is bounded by
    ``connect_timeout_s``; on PostgreSQL each statement (a wait for a row lock included) by
    ``statement_timeout_s``, and TCP keepalives notice a server that vanished without closing the
    connection (a crashed node, a dropped network path) within about a minute instead of the
    kernel's two hours. Migrations lift the statement limit for themselves."""
    if settings.url.startswith("sqlite"):
        return create_engine(settings.url, connect_args={"timeout": settings.connect_timeout_s})
    return create_engine(
        settings.url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={
            "connect_timeout": settings.connect_timeout_s,
            "options": f"-c statement_timeout={settings.statement_timeout_s * 1000}",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )
