"""Orthanc, the local stack's PACS, with its DICOMweb plugin (Debian packages ``orthanc`` and
``orthanc-dicomweb``, installed by :mod:`atlasloop.devstack.system_packages`).

It keeps its files under the run folder and serves REST and DICOMweb on ``Ports.orthanc`` with HTTP
basic authentication (a user and password made once per run folder, in ``orthanc/credentials.json``).
Orthanc 1.10 has no bind-address setting: it listens on every interface, so
``RemoteAccessAllowed: false`` makes it refuse any client not on this machine; its DIMSE port is
switched off (nothing here speaks DIMSE).
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

from atlasloop.devstack import system_packages
from atlasloop.devstack.processes import ProcessTable
from atlasloop.devstack.waiting import wait_until

BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@dataclass(frozen=True)
class OrthancAccess:
    """How a client reaches the local Orthanc."""

    url: str  # REST root
    dicomweb_url: str  # DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)
    username: str
    password: str


class Orthanc:
    def __init__(self, processes: ProcessTable, run_dir: Path, port: int) -> None:
        self._processes = processes
        self._dir = run_dir / "orthanc"
        self._port = port

    def access(self) -> OrthancAccess:
        credentials = self._dir / "credentials.json"
        if not credentials.exists():
            self._dir.mkdir(parents=True, exist_ok=True)
            credentials.write_text(json.dumps({"username": "atlasloop", "password": secrets.token_urlsafe(18)}))
            credentials.chmod(0o600)
        user = json.loads(credentials.read_text())
        url = f"http://127.0.0.1:{self._port}"
        return OrthancAccess(url, f"{url}/dicom-web", user["username"], user["password"])

    def start(self, timeout_s: float = 60) -> OrthancAccess:
        access = self.access()
        if not self._processes.running("orthanc"):
            system_packages.ensure(system_packages.ORTHANC, "the local PACS (Orthanc)")
            config = {
                "Name": "AtlasLoop PACS",
                "StorageDirectory": str(self._dir / "db"),
                "IndexDirectory": str(self._dir / "db"),
                "HttpPort": self._port,
                "DicomServerEnabled": False,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": True,
                "RegisteredUsers": {access.username: access.password},
                "HttpsVerifyPeers": True,
                "Plugins": [DICOMWEB_PLUGIN],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1"},
            }
            path = self._dir / "orthanc.json"
            path.write_text(json.dumps(config, indent=2))
            path.chmod(0o600)  # it holds the password
            self._processes.start("orthanc", [BINARY, str(path)])
        wait_until("Orthanc", lambda: self._answers(access), timeout_s, self._processes.log_file("orthanc"))
        return access

    @staticmethod
    def _answers(access: OrthancAccess) -> bool:
        token = b64encode(f"{access.username}:{access.password}".encode()).decode()
        request = urllib.request.Request(f"{access.url}/system", headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False
