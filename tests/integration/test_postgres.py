"""A transaction against the real PostgreSQL: committed work stays, rolled-back work vanishes."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import text

from atlasloop.common.database import make_engine

pytestmark = pytest.mark.integration


def test_commit_and_rollback(stack):
    engine = make_engine(stack.database_settings())
    table = f"t_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {table} (id int primary key, note text)"))
            conn.execute(text(f"INSERT INTO {table} VALUES (1, 'kept')"))
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(text(f"INSERT INTO {table} VALUES (2, 'lost')"))
            raise RuntimeError("abort the transaction")
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT id, note FROM {table} ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "kept")]
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_a_statement_waiting_on_a_lock_ends_at_the_statement_timeout(stack):
    """A row lock held by a stuck transaction must not hang a request thread for ever: the wait is
    cancelled at ``statement_timeout_s``, and the error is an outage (UNAVAILABLE), not a bug."""
    from sqlalchemy.exc import OperationalError

    from atlasloop.common.outages import outage

    settings = stack.database_settings().model_copy(update={"statement_timeout_s": 1})
    engine = make_engine(settings)
    table = f"t_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {table} (id int primary key)"))
            conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
        with engine.connect() as holder:
            holder.execute(text(f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE"))  # held, never committed
            started = time.monotonic()
            with pytest.raises(OperationalError) as err, engine.begin() as waiter:
                waiter.execute(text(f"UPDATE {table} SET id = 2 WHERE id = 1"))
            waited = time.monotonic() - started
            holder.rollback()
        assert 0.9 < waited < 5, waited
        assert "statement timeout" in str(err.value) and outage(err.value)
        with engine.connect() as conn:  # the limit is per statement: a long session is fine
            assert conn.execute(text("SELECT pg_sleep(0.5), 1")).all()[0][1] == 1
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
