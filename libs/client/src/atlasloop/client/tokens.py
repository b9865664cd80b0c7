"""The development bearer tokens of a local stack: ``<run dir>/tokens.json``, token -> "name:role".

The local stack writes the file once (mode 0600): one token per role for people
(``dev-<role>:<role>``); a second annotator (``dev-annotator-2``), because the queue never offers
a case's double read to the person who revised it; and one per service (``<service>:service``),
because what a service may write is decided from which service it is (only tracking writes human
labels, only inference AI ones). The command line, the demo and the tests read the token each call
needs. In production tokens come from the identity provider instead (``--token`` /
``ATLASLOOP_TOKEN``; a JWT per workload for the services).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from atlasloop.common.domain import Role
from atlasloop.common.service_map import SERVICES

FILE = "tokens.json"
SECOND_READER = "dev-annotator-2"  # a second person with the annotator role, for double reads


class TokenFile:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / FILE

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, str]:
        """token -> "name:role" (the format the services' ``dev`` auth mode takes)."""
        if not self.path.exists():
            raise FileNotFoundError(f"no {self.path}; start the stack with 'make up' or pass --token")
        return dict(json.loads(self.path.read_text()))

    def create(self) -> dict[str, str]:
        """The tokens, made once per stack and kept (a file from before service identities gains
        the tokens it lacks)."""
        tokens = self.read() if self.path.exists() else {}
        held = set(tokens.values())
        wanted = [f"dev-{role}:{role}" for role in Role] + [f"{SECOND_READER}:{Role.ANNOTATOR}"]
        wanted += [f"{name}:{Role.SERVICE}" for name in SERVICES]
        missing = [spec for spec in wanted if spec not in held]
        if not missing:
            return tokens
        tokens |= {secrets.token_urlsafe(24): spec for spec in missing}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(tokens, indent=2))
        self.path.chmod(0o600)
        return tokens

    def by_role(self) -> dict[str, str]:
        """role -> the token of the person holding it (``dev-<role>``)."""
        return {role: token for token, spec in self.read().items() for role in Role if spec == f"dev-{role}:{role}"}

    def token_of_person(self, name: str) -> str:
        """The token of the person ``name`` (``dev-annotator-2``, say)."""
        for token, spec in self.read().items():
            if spec.split(":", 1)[0] == name and not spec.endswith(f":{Role.SERVICE}"):
                return token
        raise KeyError(f"{self.path} holds no token for {name!r}")

    def token_of_service(self, name: str) -> str:
        """The token a service calls the others with (its identity)."""
        for token, spec in self.read().items():
            if spec == f"{name}:{Role.SERVICE}":
                return token
        raise KeyError(f"{self.path} holds no token for the service {name!r}")

    def token_for(self, role: str) -> str:
        try:
            return self.by_role()[role]
        except KeyError:
            raise KeyError(f"{self.path} holds no token for the role {role!r}") from None
