"""The page's HTTP side without services: who may sign in, what a request must carry, and what
is refused before any service is called (the services' addresses here answer nothing)."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from atlasloop.web.app import build
from atlasloop.web.settings import WebSettings

LONG_TOKEN = "g" * 6000  # an identity provider's access token with many groups is as long
TOKENS = {
    "ann-token": "alice:annotator",
    "rev-token": "rob:reviewer",
    "svc-token": "training:service",
    LONG_TOKEN: "carol:annotator",
}


@pytest.fixture
def page():
    settings = WebSettings(
        auth={"mode": "dev", "dev_tokens": TOKENS},
        targets={
            name: "127.0.0.1:9" for name in ("storage", "inference", "scoring", "rendering", "tracking", "training")
        },
        max_request_bytes=12288,  # a long token fits; a revision of 2000 voxels does not
    )
    with TestClient(build(settings), base_url="http://127.0.0.1") as client:
        yield client


def sign_in(page, token):
    return page.post("/api/session", json={"token": token}, headers={"x-atlasloop": "1"})


def test_sign_in_seals_the_token_in_a_strict_http_only_cookie(page):
    reply = sign_in(page, "ann-token")
    assert reply.status_code == 200 and reply.json() == {"name": "alice", "roles": ["annotator"]}
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "ann-token" not in cookie
    assert page.get("/api/me").json() == {"name": "alice", "roles": ["annotator"]}
    out = page.delete("/api/session", headers={"x-atlasloop": "1"})
    assert out.status_code == 200 and out.json() == {"signed_out": True, "logout_url": None}  # no provider here
    page.cookies.clear()
    assert page.get("/api/me").status_code == 401


def test_a_long_token_signs_in_across_cookies_each_within_what_browsers_keep(page):
    reply = sign_in(page, LONG_TOKEN)
    assert reply.status_code == 200
    set_cookies = reply.headers.get_list("set-cookie")
    kept = [c for c in set_cookies if "Max-Age=0" not in c]
    assert len(kept) >= 3 and all(len(c) <= 4096 and "SameSite=strict" in c and "HttpOnly" in c for c in kept)
    assert page.get("/api/me").json() == {"name": "carol", "roles": ["annotator"]}
    # a shorter session after it removes the parts the long one left, or they would be joined to it
    shorter = sign_in(page, "ann-token").headers.get_list("set-cookie")
    assert sum("Max-Age=0" in c for c in shorter) == 3
    assert page.get("/api/me").json() == {"name": "alice", "roles": ["annotator"]}
    assert sign_in(page, "t" * 8193).status_code == 400  # larger than any sealed session may be


def test_unknown_and_service_tokens_do_not_sign_in(page):
    assert sign_in(page, "guess").status_code == 401
    assert sign_in(page, "svc-token").status_code == 403
    assert sign_in(page, "").status_code == 400
    assert page.post("/api/session", content=b"not json", headers={"x-atlasloop": "1"}).status_code == 400


def test_changes_need_the_header_a_foreign_form_cannot_send_and_the_right_role(page):
    sign_in(page, "rev-token")
    assert page.post("/api/next").status_code == 403  # no x-atlasloop header
    reply = page.post("/api/next", headers={"x-atlasloop": "1"})
    assert reply.status_code == 403 and "annotator role" in reply.json()["error"]
    assert page.get("/api/cases/c/image?plane=axial&index=0&as=annotator").status_code == 403


def test_bad_requests_are_refused_before_any_service_is_called(page):
    sign_in(page, "ann-token")
    headers = {"x-atlasloop": "1"}
    revise = "/api/leases/l1/revision"
    assert page.post(revise, json={"voxels": [1.5], "labels": [1], "seconds": 1}, headers=headers).status_code == 400
    assert page.post(revise, json={"voxels": [1], "labels": [1], "seconds": -1}, headers=headers).status_code == 400
    assert page.post(revise, json={"voxels": [1], "labels": [1], "seconds": 1e9}, headers=headers).status_code == 400
    assert page.post(revise, json=[1, 2], headers=headers).status_code == 400
    good = {"voxels": [1], "labels": [1], "seconds": 1}
    wrong_tags = (
        [{"organ": "liver", "tag": "annotator_slip"}],
        [{"organ": "brain", "tag": "leakage"}],
        "leakage",
        [{"organ": ["liver"], "tag": "leakage"}],  # not even hashable
        [{"organ": "liver", "tag": {"leakage": 1}}],
    )
    for tags in wrong_tags:
        reply = page.post(revise, json={**good, "tags": tags}, headers=headers)  # not an AI label's error
        assert reply.status_code == 400 and "tag" in reply.json()["error"]
    box = {"min_mm": [0, 0, 0], "max_mm": [1, 1, 1]}
    for verdict in ({"organ": "liver", "verdict": ["fixed"]}, {"organ": {"a": 1}, "verdict": "fixed"}):
        reply = page.post(revise, json={**good, "verdicts": [verdict | box]}, headers=headers)
        assert reply.status_code == 400 and "verdict" in reply.json()["error"]
    for corners in ({"min_mm": [0, 0, True], "max_mm": [1, 1, 1]}, {"min_mm": [0, 0], "max_mm": [1, 1, 1]}):
        verdict = {"organ": "liver", "verdict": "fixed"} | corners
        reply = page.post(revise, json={**good, "verdicts": [verdict]}, headers=headers)
        assert reply.status_code == 400 and "three numbers" in reply.json()["error"]
    assert page.post("/api/leases/l1/tags", json={"voxels": ["a"], "labels": [1]}, headers=headers).status_code == 400
    big = json.dumps({"voxels": list(range(2000)), "labels": [1] * 2000, "seconds": 1})
    reply = page.post(revise, content=big, headers={**headers, "content-type": "application/json"})
    assert reply.status_code == 413
    assert page.get("/api/cases/c/image?plane=oblique&index=0").status_code == 400
    assert page.get("/api/cases/c/image?plane=axial&index=x").status_code == 400
    assert page.get("/api/cases/c/image?plane=axial&index=0&window=disco").status_code == 400
    assert page.get("/api/cases/c/image?plane=axial&index=0&heat=brain").status_code == 400
    # a well-formed call reaches the services; none answers here
    assert page.post("/api/next", headers=headers).status_code == 503


def test_the_page_and_its_schema_are_served(page):
    assert "AtlasLoop" in page.get("/").text
    organs = page.get("/api/schema").json()["organs"]
    assert organs[0] == {"label": 1, "name": organs[0]["name"], "color": organs[0]["color"]} and len(organs) == 9
    assert page.get("/static/app.js").status_code == 200


def test_every_response_forbids_framing_inline_code_and_sniffing(page):
    for reply in (page.get("/"), page.get("/healthz"), page.get("/api/me")):
        policy = reply.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert reply.headers["x-content-type-options"] == "nosniff"
    assert page.get("/healthz").json() == {"ok": True}
