"""The development bearer tokens of a local stack: ``<run dir>/tokens.json``, token -> "name:role".

The local stack writes the file once (mode 0600, one token per role); the command line, the demo
and the tests read the token of the role each call needs. In production tokens come from the
identity provider instead (``--token`` / ``ATLASLOOP_TOKEN``).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from atlasloop.common.domain import Role

FILE = "tokens.json"


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
        """The tokens, made once per stack (one per role) and kept."""
        if self.path.exists():
            return self.read()
        tokens = {secrets.token_urlsafe(24): f"dev-{role}:{role}" for role in Role}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(tokens, indent=2))
        self.path.chmod(0o600)
        return tokens

    def by_role(self) -> dict[str, str]:
        """role -> token."""
        return {spec.rsplit(":", 1)[1]: token for token, spec in self.read().items()}

    def token_for(self, role: str) -> str:
        try:
            return self.by_role()[role]
        except KeyError:
            raise KeyError(f"{self.path} holds no token for the role {role!r}") from None
