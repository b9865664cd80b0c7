"""Alembic environment: the engine comes from the caller (``atlasloop.tracking.migrate``)."""

from __future__ import annotations

from alembic import context

from atlasloop.tracking.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
