"""The object-store layout the storage service owns (see ARCHITECTURE.md).

A case exists exactly when ``cases/<id>/meta.json`` exists: it is written last, after every other
object of the case, so a failed import never leaves a visible case behind. Label versions work the
same way: the ``.json`` provenance beside the ``.nii.gz`` is the commit marker.
"""

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
        raise InvalidInput(f"case id {case_id[:80]!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit, without '..'")
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


def case_prefix(case_id: str) -> str:
    return f"cases/{case_id}/"


def ct_key(case_id: str) -> str:
    return f"cases/{case_id}/ct.nii.gz"


def meta_key(case_id: str) -> str:
    return f"cases/{case_id}/meta.json"


def label_key(case_id: str, version: str) -> str:
    return f"cases/{case_id}/labels/{version}.nii.gz"


def label_meta_key(case_id: str, version: str) -> str:
    return f"cases/{case_id}/labels/{version}.json"


def staging_key(upload_id: str) -> str:
    return f"staging/{upload_id}"


def content_index_key(content_sha256: str) -> str:
    return f"index/content/{content_sha256}"
