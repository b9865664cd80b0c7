"""Sessions sealed in a cookie: opened only when intact, under the same key, and not expired."""

from __future__ import annotations

import time

import pytest
from cryptography.fernet import Fernet

from atlasloop.web.sessions import MAX_SEALED, PART_BYTES, Sealer, join_sealed, split_sealed


def test_a_sealed_session_opens_and_a_tampered_or_foreign_one_does_not():
    key = Fernet.generate_key()
    sealer = Sealer(key, ttl_s=60)
    cookie, session = sealer.seal("secret-token", "alice", ("annotator",))
    assert "secret-token" not in cookie and "alice" not in cookie  # encrypted, not only signed
    assert sealer.open(cookie) == session
    assert Sealer(key, ttl_s=60).open(cookie) == session  # another replica with the same key
    assert Sealer(Fernet.generate_key(), ttl_s=60).open(cookie) is None
    flipped = cookie[:-5] + ("A" if cookie[-5] != "A" else "B") + cookie[-4:]
    assert sealer.open(flipped) is None
    assert sealer.open("") is None and sealer.open(None) is None and sealer.open("x" * 16000) is None


def test_an_expired_session_is_refused(monkeypatch):
    sealer = Sealer(Fernet.generate_key(), ttl_s=60)
    cookie, _ = sealer.seal("t", "bob", ("reviewer",))
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert sealer.open(cookie) is None


def test_a_long_session_is_split_into_parts_and_joined_back_in_order():
    sealer = Sealer(Fernet.generate_key(), ttl_s=60)
    cookie, session = sealer.seal("x" * 8192, "carol", ("annotator",))
    parts = split_sealed(cookie)
    assert [name for name, _ in parts] == ["atlasloop_session", "atlasloop_session_1", "atlasloop_session_2"]
    assert all(len(value) <= PART_BYTES for _, value in parts)
    assert sealer.open(join_sealed(dict(reversed(parts)))) == session  # the cookies' order does not matter
    assert sealer.open(join_sealed(dict(parts[:1] + parts[2:]))) is None  # a part missing: no session
    assert join_sealed({}) is None
    with pytest.raises(ValueError, match="at most"):
        split_sealed("x" * (MAX_SEALED + 1))
