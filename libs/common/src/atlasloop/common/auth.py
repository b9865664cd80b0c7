"""Principals, roles and the two ways a bearer token becomes a principal.

Every RPC declares the roles allowed to call it with the ``atlasloop.common.v1.required_roles``
method option in its proto; :func:`role_policy` reads those declarations from the descriptors, and
a method without one makes the server refuse to start (fail closed).
"""

from __future__ import annotations

import contextvars
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jwt
from google.protobuf.descriptor import ServiceDescriptor

from atlasloop.common.domain import Role as Role  # re-exported: principals hold these
from atlasloop.common.errors import InvalidInput, PermissionDenied, Unauthenticated
from atlasloop.common.settings import AuthSettings
from atlasloop.common.v1 import common_pb2


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name for the audit log, the roles they hold, and the cases this call
    carries a genuine grant for (``atlasloop.common.case_grants``)."""

    name: str
    roles: frozenset[Role]
    cases: frozenset[str] = frozenset()


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("atlasloop_principal", default=None)


def current_principal() -> Principal:
    """The principal of the RPC being handled; set by the auth interceptor."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("no authenticated principal for this call")
    return principal


def set_current_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def reset_current_principal(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def _parse_roles(names: Iterable[str]) -> frozenset[Role]:
    try:
        return frozenset(Role(name.strip().lower()) for name in names if name.strip())
    except ValueError as exc:
        raise InvalidInput(f"unknown role in credentials: {exc}") from None


class DevTokenAuthenticator:
    """Static tokens from settings: ``{"token": "alice:annotator,reviewer"}``."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens: list[tuple[bytes, Principal]] = []
        for token, spec in tokens.items():
            name, _, roles = spec.partition(":")
            if not name or not roles:
                raise InvalidInput(f"dev token spec {spec!r} is not 'name:role[,role]'")
            self._tokens.append((token.encode(), Principal(name, _parse_roles(roles.split(",")))))

    def authenticate(self, token: str) -> Principal:
        presented = token.encode()
        found: Principal | None = None
        for known, principal in self._tokens:  # compare with every token: constant time
            if hmac.compare_digest(known, presented):
                found = principal
        if found is None:
            raise Unauthenticated("unknown bearer token")
        return found


class JwtAuthenticator:
    """Signed JWTs verified against a local JWKS file: signature, expiry, issuer, audience."""

    def __init__(self, settings: AuthSettings) -> None:
        if settings.jwks_file is None:
            raise InvalidInput("auth mode 'jwt' needs auth.jwks_file")
        self._keys = jwt.PyJWKSet.from_json(settings.jwks_file.read_text())
        self._settings = settings

    def authenticate(self, token: str) -> Principal:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            keys = [k for k in self._keys.keys if kid is None or k.key_id == kid]
            if not keys:
                raise Unauthenticated("token signed by an unknown key")
            claims = jwt.decode(
                token,
                keys[0],
                algorithms=self._settings.algorithms,
                issuer=self._settings.issuer,
                audience=self._settings.audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        roles = claims.get(self._settings.roles_claim, [])
        if isinstance(roles, str):
            roles = roles.split()
        return Principal(str(claims["sub"]), _parse_roles(roles))


Authenticator = DevTokenAuthenticator | JwtAuthenticator


def build_authenticator(settings: AuthSettings) -> Authenticator:
    if settings.mode == "jwt":
        return JwtAuthenticator(settings)
    return DevTokenAuthenticator(settings.dev_tokens)


def role_policy(services: Iterable[ServiceDescriptor]) -> dict[str, frozenset[Role]]:
    """Map ``/package.Service/Method`` to the roles its proto declares; refuse undeclared RPCs."""
    policy: dict[str, frozenset[Role]] = {}
    for service in services:
        for method in service.methods:
            declared: list[int] = list(method.GetOptions().Extensions[common_pb2.required_roles])  # type: ignore[index]
            if not declared:
                raise InvalidInput(f"{service.full_name}.{method.name} declares no required_roles")
            policy[f"/{service.full_name}/{method.name}"] = frozenset(Role.from_proto(r) for r in declared)
    return policy


def authorize(principal: Principal, allowed: frozenset[Role], method: str) -> None:
    if not principal.roles & allowed:
        wanted = ", ".join(sorted(allowed))
        raise PermissionDenied(f"{method} needs one of the roles: {wanted}")


def dev_tokens_json(tokens: Mapping[str, str]) -> str:
    """The environment-variable form of ``dev_tokens``."""
    return json.dumps(dict(tokens))
