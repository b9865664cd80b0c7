"""Ids that name objects (cases, uploads, label versions): their rules, checked once at every
boundary before an id reaches an object key (``atlasloop.common.layout``), and how new ones are made."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from atlasloop.common.errors import InvalidInput

CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
UPLOAD_ID = re.compile(r"^up-[0-9a-f]{32}$")
VERSION_ID = re.compile(r"^[0-9]{8}T[0-9]{12}-[0-9a-f]{8}$")


def validate_case_id(case_id: str) -> str:
    """Letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit, no '..'."""
    if not CASE_ID.match(case_id) or ".." in case_id:
        raise InvalidInput(
            f"case id {case_id[:80]!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return case_id


def validate_upload_id(upload_id: str) -> str:
    if not UPLOAD_ID.match(upload_id):
        raise InvalidInput(f"upload id {upload_id[:80]!r} is not one this service handed out")
    return upload_id


def validate_version(version: str) -> str:
    if not VERSION_ID.match(version):
        raise InvalidInput(f"label version {version[:80]!r} is not valid")
    return version


def new_case_id() -> str:
    return f"case-{uuid.uuid4().hex[:12]}"


def new_upload_id() -> str:
    return f"up-{uuid.uuid4().hex}"


def new_version() -> str:
    """Unique and sortable by creation time: ``20261127T073000123456-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
