"""Sign-in through an identity provider (OpenID Connect, authorization code with PKCE), against a
small provider this test runs on 127.0.0.1: it issues codes bound to the page's PKCE challenge and
redirect, and signs access and ID tokens with its own key, published to the page as a JWKS file,
as a hospital's Keycloak or Entra ID would. The page must check everything the flow promises."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from atlasloop.common.errors import InvalidInput
from atlasloop.web.app import build
from atlasloop.web.settings import WebSettings

ISSUER = "https://login.hospital.example/realms/radiology"
CLIENT = "atlasloop-web"
REDIRECT = "http://127.0.0.1/api/oidc/callback"


class Provider:
    """Codes for the authorization requests the test approves; tokens for the codes it issued."""

    def __init__(self, key) -> None:
        self.key, self.codes, self.refuse = key, {}, False
        self.claims: dict = {"sub": "dr-ito", "roles": ["annotator"]}
        self.nonce_override: str | None = None
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["content-length"])).decode()))
                status, body = provider.token(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.token_endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def approve(self, authorization_url: str) -> dict[str, str]:
        """The person signs in at the provider: a code bound to the request, sent back with its state."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorization_url).query))
        assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        return {"code": code, "state": query["state"]}

    def token(self, form: dict) -> tuple[int, dict]:
        asked = self.codes.pop(form.get("code", ""), None)  # a code works once
        if asked is None or self.refuse:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != asked["code_challenge"] or form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE or redirect mismatch"}
        now = int(time.time())
        base = {"iss": ISSUER, "iat": now, "exp": now + 300} | self.claims
        access = jwt.encode(base | {"aud": "atlasloop"}, self.key, "RS256", headers={"kid": "k1"})
        nonce = self.nonce_override or asked["nonce"]
        id_token = jwt.encode(base | {"aud": CLIENT, "nonce": nonce}, self.key, "RS256", headers={"kid": "k1"})
        return 200, {"access_token": access, "id_token": id_token, "token_type": "Bearer"}


@pytest.fixture
def provider():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    running = Provider(key)
    yield running
    running.server.shutdown()


@pytest.fixture
def page(provider, tmp_path):
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(provider.key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [public | {"kid": "k1", "use": "sig", "alg": "RS256"}]}))
    settings = WebSettings(
        auth={"mode": "jwt", "jwks_file": tmp_path / "jwks.json", "issuer": ISSUER, "audience": "atlasloop"},
        oidc={
            "enabled": True,
            "authorization_endpoint": "https://login.hospital.example/realms/radiology/auth",
            "token_endpoint": provider.token_endpoint,
            "client_id": CLIENT,
            "redirect_uri": REDIRECT,
            "end_session_endpoint": "https://login.hospital.example/realms/radiology/logout",
        },
        targets={n: "127.0.0.1:9" for n in ("storage", "inference", "scoring", "rendering", "tracking", "training")},
    )
    with TestClient(build(settings), base_url="http://127.0.0.1") as client:
        yield client


def _login(page) -> str:
    reply = page.get("/api/oidc/login", follow_redirects=False)
    assert reply.status_code == 302
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/api/oidc/" in cookie
    return reply.headers["location"]


def test_a_person_signs_in_through_the_provider_and_gets_the_services_session(page, provider):
    assert page.get("/api/config").json() == {"oidc": True, "token_sign_in": False}
    location = _login(page)
    assert location.startswith("https://login.hospital.example/realms/radiology/auth?")
    back = provider.approve(location)
    reply = page.get("/api/oidc/callback", params=back, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/"
    assert "atlasloop_session=" in reply.headers["set-cookie"] and "SameSite=strict" in reply.headers["set-cookie"]
    assert page.get("/api/me").json() == {"name": "dr-ito", "roles": ["annotator"]}
    # signing out ends the page's session and sends the browser to the provider's logout as well
    out = page.delete("/api/session", headers={"x-atlasloop": "1"})
    logout = urllib.parse.urlsplit(out.json()["logout_url"])
    assert (logout.scheme, logout.netloc, logout.path) == (
        "https",
        "login.hospital.example",
        "/realms/radiology/logout",
    )
    assert dict(urllib.parse.parse_qsl(logout.query)) == {
        "client_id": CLIENT,
        "post_logout_redirect_uri": "http://127.0.0.1/",
    }
    assert 'atlasloop_session=""' in out.headers["set-cookie"] and page.get("/api/me").status_code == 401
    # the code was used: the same answer again is refused
    page.cookies.clear()
    _login(page)
    assert page.get("/api/oidc/callback", params=back, follow_redirects=False).status_code == 400


def test_an_answer_to_another_attempt_or_an_expired_one_is_refused(page, provider):
    back = provider.approve(_login(page))
    forged = page.get("/api/oidc/callback", params={**back, "state": "someone-else\u2019s"}, follow_redirects=False)
    assert forged.status_code == 400 and "state" in forged.json()["error"]
    page.cookies.clear()  # no attempt started in this browser
    assert page.get("/api/oidc/callback", params=back, follow_redirects=False).status_code == 400
    assert page.get("/api/me").status_code == 401


def test_tokens_the_services_would_not_accept_do_not_sign_in(page, provider):
    provider.nonce_override = "replayed"  # an ID token minted for another attempt
    reply = page.get("/api/oidc/callback", params=provider.approve(_login(page)), follow_redirects=False)
    assert reply.status_code == 401 and "nonce" in reply.json()["error"]
    provider.nonce_override = None
    provider.claims = {"sub": "inference", "roles": ["service"]}  # a service identity
    reply = page.get("/api/oidc/callback", params=provider.approve(_login(page)), follow_redirects=False)
    assert reply.status_code == 403
    provider.claims = {"sub": "dr-ito", "roles": ["annotator"]}
    provider.refuse = True
    reply = page.get("/api/oidc/callback", params=provider.approve(_login(page)), follow_redirects=False)
    assert reply.status_code == 401 and "refused the code" in reply.json()["error"]
    denied = page.get("/api/oidc/callback", params={"error": "access_denied"}, follow_redirects=False)
    assert denied.status_code == 401 and "access_denied" in denied.json()["error"]
    assert page.get("/api/me").status_code == 401


def _oidc(**changes: str) -> dict:
    return {
        "enabled": True,
        "authorization_endpoint": "https://login.hospital.example/auth",
        "token_endpoint": "https://login.hospital.example/token",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
    } | changes


def test_oidc_needs_jwt_mode_and_https_endpoints():
    with pytest.raises(ValueError, match="authorization_endpoint must be https"):
        WebSettings(oidc=_oidc(authorization_endpoint="http://login.hospital.example/auth"))
    with pytest.raises(ValueError, match="end_session_endpoint must be https"):
        WebSettings(oidc=_oidc(end_session_endpoint="http://login.hospital.example/logout"))
    settings = WebSettings(oidc=_oidc())
    with pytest.raises(InvalidInput, match=r"auth\.mode 'jwt'"):
        build(settings)
