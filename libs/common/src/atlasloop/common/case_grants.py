"""Case grants: which cases an annotator may read.

Annotators see only the cases they lease or have revised; reviewers, admins and services see all.
Tracking knows who leases and revised what, but storage, rendering and scoring serve the reads, and
asking tracking on every chunk of every read would tie each read to tracking's health. So tracking
issues a grant when it hands out a lease (and, on request, for a case the annotator holds or has
revised): a short signed statement "``subject`` may read ``case`` until ``exp``", HMAC-SHA256 under a
key the services share (``auth.grant_key``, a Kubernetes Secret in the chart). The caller sends it
as ``x-atlasloop-case-grant`` metadata; the auth interceptor verifies it against the caller's own
identity (a grant is useless to anyone else) and ``check_case_read`` decides. Stateless, like a
presigned URL: revoking is waiting out the lifetime (``auth.grant_ttl_s``, an hour by default).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable

from atlasloop.common.auth import current_principal
from atlasloop.common.domain import Role
from atlasloop.common.errors import NotReady, PermissionDenied
from atlasloop.common.ids import validate_case_id

HEADER = "x-atlasloop-case-grant"
VERSION = "cg1"
MAX_GRANTS = 16  # per call; more is refused unread
MAX_LENGTH = 512
UNRESTRICTED = frozenset({Role.REVIEWER, Role.ADMIN, Role.SERVICE})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, f"{VERSION}.{body}".encode(), hashlib.sha256).digest())


def issue(key: bytes | None, subject: str, case_id: str, ttl_s: int, now: float | None = None) -> str:
    """A grant for ``subject`` to read ``case_id`` for ``ttl_s`` seconds."""
    if not key:
        raise NotReady("no grant key is configured (auth.grant_key): annotators cannot be granted cases")
    claims = {"sub": subject, "case": case_id, "exp": int((time.time() if now is None else now) + ttl_s)}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{VERSION}.{body}.{_signature(key, body)}"


def verified_cases(key: bytes | None, subject: str, grants: Iterable[str], now: float | None = None) -> frozenset[str]:
    """The cases of the grants that are genuine, unexpired and ``subject``'s own; others are ignored."""
    if not key:
        return frozenset()
    moment = time.time() if now is None else now
    cases = set()
    for grant in list(grants)[:MAX_GRANTS]:
        if len(grant) > MAX_LENGTH:
            continue
        version, _, rest = grant.partition(".")
        body, _, signature = rest.partition(".")
        if version != VERSION or not hmac.compare_digest(signature, _signature(key, body)):
            continue
        try:
            claims = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            continue
        if claims.get("sub") == subject and float(claims.get("exp", 0)) > moment and claims.get("case"):
            cases.add(str(claims["case"]))
    return frozenset(cases)


def check_case_read(case_id: str) -> None:
    """Refuse the current caller a read of ``case_id`` unless their role sees every case or they
    sent a grant for it."""
    validate_case_id(case_id)
    principal = current_principal()
    if principal.roles & UNRESTRICTED or case_id in principal.cases:
        return
    raise PermissionDenied(
        f"{principal.name} may read only the cases they lease or have revised; "
        f"case {case_id[:80]!r} needs a grant from tracking (GrantCase)"
    )
