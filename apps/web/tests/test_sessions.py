"""Sessions sealed in a cookie: opened only when intact, under the same key, and not expired."""

from __future__ import annotations

import time

from cryptography.fernet import Fernet

from atlasloop.web.sessions import Sealer


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
    assert sealer.open("") is None and sealer.open(None) is None and sealer.open("x" * 9000) is None


def test_an_expired_session_is_refused(monkeypatch):
    sealer = Sealer(Fernet.generate_key(), ttl_s=60)
    cookie, _ = sealer.seal("t", "bob", ("reviewer",))
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert sealer.open(cookie) is None
