"""Sign-in with the site's identity provider: OpenID Connect's authorization code flow with PKCE.

The page sends the browser to the provider's authorization endpoint with a fresh ``state``,
``nonce`` and PKCE challenge (S256), kept meanwhile in a sealed, short-lived cookie. The provider
sends the browser back with a code; the page's server exchanges it at the token endpoint (a
confidential client when a secret is configured) and signs the person in with the **access token**,
which it checks exactly as the services will: the services' own JWT authenticator, with the same
JWKS, issuer and audience (``auth``). When the provider also returns an ID token, its signature,
issuer, audience (the client id) and nonce are checked too. The browser never sees either token.

Endpoints are configured, not discovered: like the services' JWKS, nothing is fetched from the
provider but the token exchange itself.

Signing out ends the page's session and, when the provider's ``end_session_endpoint`` is
configured, sends the browser there too (RP-initiated logout 1.0), so that the next person at a
shared reading-room workstation is not signed straight back in by the provider's own session. The
page keeps no ID token (the session cookie holds only what the services need), so the request names
the client and where to come back instead of an ``id_token_hint``: providers then ask the person to
confirm, which on a shared workstation is what one wants.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jwt
from pydantic import BaseModel, Field, SecretStr, model_validator

from atlasloop.common.errors import InvalidInput, Unauthenticated
from atlasloop.common.settings import AuthSettings

MAX_TOKEN_RESPONSE_BYTES = 1 << 20
ATTEMPT_TTL_S = 600  # from the redirect to the provider to the browser's return
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class OidcSettings(BaseModel):
    """The provider's endpoints and this page's registration with it."""

    enabled: bool = False
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    client_id: str = ""
    client_secret: SecretStr | None = Field(default=None, description="Confidential clients only.")
    redirect_uri: str = Field(default="", description="This page's /api/oidc/callback, as registered.")
    scopes: str = "openid profile"
    end_session_endpoint: str = Field(default="", description="The provider's logout (RP-initiated); empty: none.")
    post_logout_redirect_uri: str = Field(
        default="", description="Where the provider sends people after logout, as registered; empty: this page's /."
    )
    ca_file: Path | None = Field(default=None, description="PEM CA of the provider, when not a public one.")
    timeout_s: float = Field(default=10.0, gt=0, le=60)

    @model_validator(mode="after")
    def _complete(self) -> OidcSettings:
        if not self.enabled:
            return self
        for name in ("authorization_endpoint", "token_endpoint", "client_id", "redirect_uri"):
            if not getattr(self, name):
                raise ValueError(f"oidc.{name} is required when oidc is enabled")
        optional = [n for n in ("end_session_endpoint", "post_logout_redirect_uri") if getattr(self, n)]
        for name in ("authorization_endpoint", "token_endpoint", "redirect_uri", *optional):
            url = urllib.parse.urlsplit(getattr(self, name))
            if url.scheme != "https" and not (url.scheme == "http" and url.hostname in LOCAL_HOSTS):
                raise ValueError(f"oidc.{name} must be https (http only on this machine)")
        return self


@dataclass(frozen=True)
class Attempt:
    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Attempt:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))

    def as_dict(self) -> dict[str, str]:
        return {"state": self.state, "nonce": self.nonce, "verifier": self.verifier}

    @classmethod
    def from_dict(cls, value: dict) -> Attempt:
        return cls(str(value["state"]), str(value["nonce"]), str(value["verifier"]))


def challenge(verifier: str) -> str:
    """PKCE's S256 challenge of a verifier (RFC 7636)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorization_url(settings: OidcSettings, attempt: Attempt) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": settings.redirect_uri,
            "scope": settings.scopes,
            "state": attempt.state,
            "nonce": attempt.nonce,
            "code_challenge": challenge(attempt.verifier),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in settings.authorization_endpoint else "?"
    return settings.authorization_endpoint + separator + query


def logout_url(settings: OidcSettings) -> str | None:
    """The provider's end-session request for this page (None when no endpoint is configured)."""
    if not (settings.enabled and settings.end_session_endpoint):
        return None
    back = settings.post_logout_redirect_uri or urllib.parse.urljoin(settings.redirect_uri, "/")
    query = urllib.parse.urlencode({"client_id": settings.client_id, "post_logout_redirect_uri": back})
    separator = "&" if "?" in settings.end_session_endpoint else "?"
    return settings.end_session_endpoint + separator + query


def exchange(settings: OidcSettings, code: str, attempt: Attempt) -> dict:
    """The token endpoint's answer to the code (RFC 6749 4.1.3), bounded and checked for shape."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": settings.redirect_uri,
        "client_id": settings.client_id,
        "code_verifier": attempt.verifier,
    }
    if settings.client_secret is not None:
        form["client_secret"] = settings.client_secret.get_secret_value()
    request = urllib.request.Request(
        settings.token_endpoint,
        data=urllib.parse.urlencode(form).encode(),
        headers={"content-type": "application/x-www-form-urlencoded", "accept": "application/json"},
        method="POST",
    )
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s, context=context) as reply:
            body = reply.read(MAX_TOKEN_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as error:
        detail = error.read(2000).decode(errors="replace")
        raise Unauthenticated(f"the identity provider refused the code ({error.code}): {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise Unauthenticated(f"the identity provider's token endpoint did not answer: {error}") from None
    if len(body) > MAX_TOKEN_RESPONSE_BYTES:
        raise Unauthenticated("the identity provider's token response is too large")
    try:
        tokens = json.loads(body)
    except ValueError:
        raise Unauthenticated("the identity provider's token response is not JSON") from None
    if not isinstance(tokens, dict) or not isinstance(tokens.get("access_token"), str):
        raise Unauthenticated("the identity provider returned no access token")
    return tokens


def check_id_token(id_token: str, auth: AuthSettings, settings: OidcSettings, nonce: str) -> None:
    """An ID token, when the provider sends one: signed by a key of the JWKS, from the issuer, for
    this client, and answering this sign-in attempt (its nonce)."""
    if auth.jwks_file is None:
        raise InvalidInput("OIDC sign-in needs auth.mode 'jwt' with its jwks_file")
    keys = jwt.PyJWKSet.from_json(auth.jwks_file.read_text())
    try:
        kid = jwt.get_unverified_header(id_token).get("kid")
        candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
        if not candidates:
            raise Unauthenticated("the ID token is signed by an unknown key")
        claims = jwt.decode(
            id_token,
            candidates[0],
            algorithms=auth.algorithms,
            issuer=auth.issuer,
            audience=settings.client_id,
            options={"require": ["exp", "sub", "nonce"]},
        )
    except jwt.PyJWTError as error:
        raise Unauthenticated(f"invalid ID token: {error}") from None
    if not secrets.compare_digest(str(claims["nonce"]).encode(), nonce.encode()):
        raise Unauthenticated("the ID token answers another sign-in attempt (nonce)")
