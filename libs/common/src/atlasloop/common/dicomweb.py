"""A DICOMweb client (PS3.18): QIDO-RS to find studies and a study's series, WADO-RS to retrieve a series'
instances, STOW-RS to store instances (a SEG going back to the PACS).

Any PACS that speaks DICOMweb works (Orthanc with its plugin in the local stack and the tests).
What comes back is bounded before it is read whole: a retrieval stops at ``max_bytes`` and is
refused, UIDs are checked before they go into a URL, and a multipart answer without its boundary
or with a malformed part is refused rather than half-read.
"""

from __future__ import annotations

import json
import re
import secrets
from base64 import b64encode
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

import urllib3

from atlasloop.common.errors import InvalidInput, NotFound, NotReady, TooLarge

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SERIES_INSTANCE_UID = "0020000E"
STUDY_INSTANCE_UID = "0020000D"
QUERY_KEY = re.compile(r"^([A-Za-z]{1,64}|[0-9A-Fa-f]{8})$")  # a DICOM keyword or a tag
FAILED_SOP_SEQUENCE = "00081198"
DICOM_PARTS = 'multipart/related; type="application/dicom"'


def check_uid(uid: str, what: str) -> str:
    if len(uid) > 64 or not UID.match(uid):
        raise InvalidInput(f"{what} {uid[:80]!r} is not a DICOM UID (digits and dots, at most 64)")
    return uid


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a multipart/related answer's parts."""
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/related") or found is None:
        raise InvalidInput(f"expected a multipart/related answer with a boundary, got {content_type[:100]!r}")
    delimiter = b"--" + found.group(1).encode()
    pieces = body.split(delimiter)
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise InvalidInput("the multipart answer is cut off (no closing boundary)")
    parts = []
    for piece in pieces[1:-1]:
        _headers, separator, content = piece.partition(b"\r\n\r\n")
        if not separator:
            raise InvalidInput("a part of the multipart answer has no header end")
        parts.append(content[:-2] if content.endswith(b"\r\n") else content)
    return parts


class DicomWebClient:
    def __init__(
        self,
        base_url: str,
        username: str = "",
        password: str = "",
        timeout_s: float = 60.0,
        max_bytes: int = 2 * 1024**3,
        ca_file: str | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"DICOMweb URL {base_url[:100]!r} is not http(s)")
        self._base = base_url.rstrip("/")
        self._headers = {}
        if username:
            token = b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s),
            retries=False,
            ca_certs=ca_file,
        )
        self._max_bytes = max_bytes

    def _request(
        self, method: str, path: str, accept: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[urllib3.BaseHTTPResponse, bytes]:
        """The answer and its body, read up to ``max_bytes``; errors as the project's exceptions."""
        headers = {**self._headers, "Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            reply = self._http.request(
                method, self._base + path, body=body, headers=headers, preload_content=False, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            raise NotReady(f"the PACS at {self._base} does not answer ({type(exc).__name__})") from None
        if reply.status == 404:
            reply.release_conn()
            raise NotFound(f"the PACS has no {path}")
        if reply.status in (401, 403):
            reply.release_conn()
            raise InvalidInput(f"the PACS refused the credentials ({reply.status})")
        if reply.status == 204:
            return reply, b""
        declared = int(reply.headers.get("Content-Length") or 0)
        if declared > self._max_bytes:
            reply.release_conn()
            raise TooLarge(f"the PACS answers {declared:,} bytes, over the limit of {self._max_bytes:,}")
        data = bytearray()
        for chunk in reply.stream(1024 * 1024):
            data += chunk
            if len(data) > self._max_bytes:
                reply.release_conn()
                raise TooLarge(f"the PACS's answer passed the limit of {self._max_bytes:,} bytes")
        reply.release_conn()
        if 300 <= reply.status < 500:  # the request itself: retrying it cannot help
            raise InvalidInput(f"the PACS refused {method} {path} (HTTP {reply.status}): {bytes(data[:200])!r}")
        if reply.status >= 500:
            raise NotReady(f"the PACS failed {method} {path} (HTTP {reply.status}): {bytes(data[:200])!r}")
        return reply, bytes(data)

    def studies(self, query: Mapping[str, str], limit: int = 1000) -> list[str]:
        """QIDO-RS: the StudyInstanceUIDs of the studies matching ``query`` (DICOM keyword or tag ->
        value, with the PACS's matching: ``*`` wildcards, ``-`` date ranges), at most ``limit``."""
        for key, value in query.items():
            if not QUERY_KEY.match(key) or len(value) > 256:
                raise InvalidInput(f"QIDO query {key[:70]!r}={value[:70]!r}: a DICOM keyword or tag, a value of <= 256")
        # Wildcards, ranges and lists stay literal: percent-encoded, Orthanc 1.10 matches them as text.
        params = urlencode({**query, "limit": str(limit)}, safe="*?-,.:^", quote_via=quote)
        _reply, data = self._request("GET", f"/studies?{params}", "application/dicom+json")
        return self._uids(data, STUDY_INSTANCE_UID, "study UID")

    def _uids(self, data: bytes, tag: str, what: str) -> list[str]:
        found = json.loads(data or b"[]")
        if not isinstance(found, list):
            raise InvalidInput("the PACS's QIDO answer is not a list")
        uids = []
        for item in found:
            value = (item.get(tag) or {}).get("Value") or [""]
            uids.append(check_uid(str(value[0]), what))
        return sorted(uids)

    def series_of(self, study_uid: str) -> list[str]:
        """QIDO-RS: the SeriesInstanceUIDs of a study."""
        check_uid(study_uid, "study UID")
        _reply, data = self._request("GET", f"/studies/{study_uid}/series", "application/dicom+json")
        return self._uids(data, SERIES_INSTANCE_UID, "series UID")

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        """WADO-RS: every instance of a series, written to ``folder`` as ``NNNNN.dcm``."""
        check_uid(study_uid, "study UID")
        check_uid(series_uid, "series UID")
        reply, data = self._request(
            "GET", f"/studies/{study_uid}/series/{series_uid}", f"{DICOM_PARTS}; transfer-syntax=*"
        )
        parts = split_multipart(data, reply.headers.get("Content-Type", ""))
        if not parts:
            raise NotFound(f"the PACS holds no instance of series {series_uid}")
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, part in enumerate(parts):
            path = folder / f"{n:05d}.dcm"
            path.write_bytes(part)
            paths.append(path)
        return paths

    def store(self, instances: Sequence[bytes]) -> None:
        """STOW-RS: store instances; every one must be accepted."""
        boundary = secrets.token_hex(16)
        body = b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
            for data in instances
        )
        body += b"--" + boundary.encode() + b"--\r\n"
        _reply, data = self._request(
            "POST", "/studies", "application/dicom+json", body, f"{DICOM_PARTS}; boundary={boundary}"
        )
        answer = json.loads(data or b"{}")
        failed = (answer.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or []
        if failed:
            raise InvalidInput(f"the PACS refused {len(failed)} of {len(instances)} instances")
