"""A transaction against the real PostgreSQL: committed work stays, rolled-back work vanishes."""

from __future__ import annotations

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
