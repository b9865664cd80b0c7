"""Sign-in sessions sealed in a cookie.

A session is the person's bearer token, name and roles, encrypted and authenticated with Fernet
(AES-CBC + HMAC-SHA256) under the deployment's key, so any replica can open it and nobody can read
or forge one. The cookie is ``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict`` and,
behind HTTPS, ``Secure``; every request that changes something must also carry the
``X-AtlasLoop: 1`` header, which a form on another site cannot send.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "atlasloop_session"
CSRF_HEADER = "x-atlasloop"


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
        if not cookie or len(cookie) > 8192:
            return None
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode(), ttl=self.ttl_s))
            session = Session(data["token"], data["name"], tuple(data["roles"]), float(data["expires_at"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > time.time() else None
