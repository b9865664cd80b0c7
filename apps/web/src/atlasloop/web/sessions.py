"""Sign-in sessions sealed in a cookie.

A session is the person's bearer token, name and roles, encrypted and authenticated with Fernet
(AES-CBC + HMAC-SHA256) under the deployment's key, so any replica can open it and nobody can read
or forge one. The cookie is ``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict`` and,
behind HTTPS, ``Secure``; every request that changes something must also carry the
``X-AtlasLoop: 1`` header, which a form on another site cannot send.

Browsers drop a cookie over 4096 bytes without a word, and an identity provider's access token
with many groups or roles is easily 3 KB before sealing. A sealed session is therefore carried in
up to ``MAX_PARTS`` cookies (``atlasloop_session``, ``atlasloop_session_1``, ...) of at most
``PART_BYTES`` each, and joined again on every request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "atlasloop_session"
CSRF_HEADER = "x-atlasloop"
PART_BYTES = 3800  # a part's value; its name and attributes stay within the browsers' 4096
MAX_PARTS = 4  # a sealed session of up to 15,200 bytes: any token sign-in accepts (8 KiB) fits
MAX_SEALED = PART_BYTES * MAX_PARTS


def part_names() -> list[str]:
    """The cookies a session may be carried in, in order."""
    return [COOKIE] + [f"{COOKIE}_{i}" for i in range(1, MAX_PARTS)]


def split_sealed(sealed: str) -> list[tuple[str, str]]:
    """(cookie name, value) for each part of a sealed session, first part first."""
    if len(sealed) > MAX_SEALED:
        raise ValueError(f"a sealed session is at most {MAX_SEALED} bytes, this one {len(sealed)}")
    parts = [sealed[i : i + PART_BYTES] for i in range(0, len(sealed), PART_BYTES)]
    return list(zip(part_names(), parts, strict=False))


def join_sealed(cookies: Mapping[str, str]) -> str | None:
    """The sealed session the request's cookies carry (the parts up to the first missing one)."""
    parts = []
    for name in part_names():
        if name not in cookies:
            break
        parts.append(cookies[name])
    return "".join(parts) or None


@dataclass(frozen=True)
class Session:
    token: str
    name: str
    roles: tuple[str, ...]
    expires_at: float

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)


class Sealer:
    def __init__(self, key: bytes | None, ttl_s: int) -> None:
        self._fernet = Fernet(key or Fernet.generate_key())
        self.ttl_s = ttl_s

    def seal(self, token: str, name: str, roles: tuple[str, ...]) -> tuple[str, Session]:
        session = Session(token, name, roles, time.time() + self.ttl_s)
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode(), session

    def seal_value(self, purpose: str, value: dict) -> str:
        """Any other short-lived value the browser carries for the server (a sign-in attempt's
        state), bound to its purpose so that it never opens as anything else."""
        return self._fernet.encrypt(json.dumps({"purpose": purpose, "value": value}).encode()).decode()

    def open_value(self, purpose: str, cookie: str | None, ttl_s: int) -> dict | None:
        if not cookie or len(cookie) > 8192:
            return None
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode(), ttl=ttl_s))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict) or data.get("purpose") != purpose or not isinstance(data.get("value"), dict):
            return None
        return data["value"]

    def open(self, cookie: str | None) -> Session | None:
        """The session a cookie seals; None when absent, forged, damaged or expired."""
        if not cookie or len(cookie) > MAX_SEALED:
            return None
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode(), ttl=self.ttl_s))
            session = Session(data["token"], data["name"], tuple(data["roles"]), float(data["expires_at"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > time.time() else None
