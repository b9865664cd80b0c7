"""SQLAlchemy engines for PostgreSQL (production, tests) and SQLite (one-machine demo)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from atlasloop.common.settings import DatabaseSettings


def make_engine(settings: DatabaseSettings) -> Engine:
    """An engine whose connections fail fast when the database does not answer."""
    if settings.url.startswith("sqlite"):
        return create_engine(settings.url, connect_args={"timeout": settings.connect_timeout_s})
    return create_engine(
        settings.url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={"connect_timeout": settings.connect_timeout_s},
    )
