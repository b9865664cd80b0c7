"""The web page in the chart: HTTPS only through an Ingress with the site's certificate, Secure
cookies, a session key every replica shares (generated once, or the site's own), settings the
page's own class parses, and traffic limited to the browsers' side and the services it calls."""

from __future__ import annotations

import base64
import subprocess

import pytest
from cryptography.fernet import Fernet

from atlasloop.web.oidc import logout_url

from .rendering import CHART, render, settings_class

GPU = CHART / "ci" / "gpu-8-values.yaml"  # the page behind nginx with cert-manager's certificate
HOSPITAL = CHART / "ci" / "external-managed-values.yaml"  # JWT sign-in, mutual TLS to the services


def _kinds(documents: list[dict], name: str = "atlasloop-web") -> dict[str, dict]:
    return {d["kind"]: d for d in documents if d["metadata"]["name"] == name}


def test_the_page_is_served_over_https_with_secure_cookies_and_a_shared_session_key(helm, monkeypatch):
    documents = render(helm, GPU)
    web = _kinds(documents)
    ingress = web["Ingress"]["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["atlasloop.hospital.example"], "secretName": "atlasloop-web-tls"}]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "atlasloop-web", "port": {"name": "http"}}
    assert web["Service"]["spec"]["ports"] == [
        {"name": "http", "port": 8790, "targetPort": "http", "appProtocol": "http"}
    ]

    pod = web["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    env = {e["name"]: e for e in container["env"]}
    secret_ref = env["ATLASLOOP_WEB_SESSION_KEY"]["valueFrom"]["secretKeyRef"]
    key = base64.b64decode(_kinds(documents, secret_ref["name"])["Secret"]["data"][secret_ref["key"]])
    Fernet(key)  # a valid Fernet key, the same for every replica (one Secret)
    with monkeypatch.context() as patch:
        for name, e in env.items():
            patch.setenv(name, e["value"] if "value" in e else key.decode())
        settings = settings_class("web")()
    assert settings.secure_cookies is True and settings.port == 8790 and settings.host == "0.0.0.0"
    assert settings.targets == {
        s: f"atlasloop-{s}:{p}"
        for s, p in {
            "storage": 50051, "inference": 50052, "scoring": 50053,
            "rendering": 50054, "tracking": 50055, "training": 50056,
        }.items()
    }  # fmt: skip
    assert not any("GRANT_KEY" in name or name.endswith("_TOKEN") for name in env)  # no service credential

    policy = web["NetworkPolicy"]["spec"]
    assert policy["ingress"] == [
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}}
                for n in ("atlasloop-viewers", "ingress-nginx")
            ],
            "ports": [{"port": "http", "protocol": "TCP"}],
        }
    ]
    reached = {
        (rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], rule["ports"][0]["port"])
        for rule in policy["egress"]
        if "to" in rule
    }
    assert reached == {(s, int(t.rsplit(":", 1)[1])) for s, t in settings.targets.items()}


def test_the_page_signs_in_with_the_services_jwt_issuer_and_calls_them_over_mutual_tls(helm, monkeypatch):
    documents = render(helm, HOSPITAL)
    container = _kinds(documents)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "from-a-secret") for e in container["env"]}
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = settings_class("web")()
    assert settings.auth.mode == "jwt" and settings.auth.issuer == "https://login.hospital.example/realms/radiology"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert settings.auth.jwks_file.parent.as_posix() in mounts
    assert settings.client_tls.enabled and settings.client_tls.cert_file.parent.as_posix() in mounts


def test_a_site_key_replaces_the_generated_one_and_no_ingress_means_none(helm):
    documents = render(helm, GPU, "web.sessionKeySecret=hospital-web-session", "web.ingress.enabled=false")
    assert not [d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-web-session")]
    assert "Ingress" not in _kinds(documents)
    env = {e["name"]: e for e in _kinds(documents)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ATLASLOOP_WEB_SESSION_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "hospital-web-session"
    assert not _kinds(render(helm, GPU, "web.enabled=false"))


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("web.ingress.tlsSecret=",), "served over HTTPS only"),
        (("web.ingress.host=",), "web.ingress.host"),
    ],
)
def test_an_ingress_without_host_or_certificate_fails_the_install(helm, sets, message):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        render(helm, GPU, *sets)
    assert message in refused.value.stderr


def test_every_generated_key_is_a_fernet_key(helm):
    """Helm's randBytes is standard base64 (+ and /); Fernet reads url-safe base64 of 32 bytes."""
    for _ in range(3):
        data = _kinds(render(helm, GPU), "atlasloop-web-session")["Secret"]["data"]["sessionKey"]
        key = base64.b64decode(data)
        assert b"+" not in key and b"/" not in key and len(base64.urlsafe_b64decode(key)) == 32
        Fernet(key)


def test_oidc_sign_in_reaches_the_page_as_its_settings_and_its_provider_is_let_out(helm, monkeypatch):
    sets = (
        "web.oidc.enabled=true",
        "web.oidc.authorizationEndpoint=https://login.hospital.example/realms/radiology/protocol/openid-connect/auth",
        "web.oidc.tokenEndpoint=https://login.hospital.example/realms/radiology/protocol/openid-connect/token",
        "web.oidc.clientSecretSecret=atlasloop-web-oidc",
        "web.oidc.endSessionEndpoint=https://login.hospital.example/realms/radiology/protocol/openid-connect/logout",
        "web.ingress.enabled=true",
        "web.ingress.host=atlasloop.hospital.example",
        "web.ingress.tlsSecret=atlasloop-web-tls",
    )
    documents = render(helm, HOSPITAL, *sets)
    web = _kinds(documents)
    container = web["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "from-a-secret") for e in container["env"]}
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = settings_class("web")()
    assert settings.oidc.enabled and settings.oidc.client_id == "atlasloop-web"
    assert settings.oidc.redirect_uri == "https://atlasloop.hospital.example/api/oidc/callback"
    assert settings.oidc.client_secret.get_secret_value() == "from-a-secret"  # from the Secret, never a value
    assert logout_url(settings.oidc) == (
        "https://login.hospital.example/realms/radiology/protocol/openid-connect/logout"
        "?client_id=atlasloop-web&post_logout_redirect_uri=https%3A%2F%2Fatlasloop.hospital.example%2F"
    )
    ports = {rule["ports"][0]["port"] for rule in web["NetworkPolicy"]["spec"]["egress"] if "to" in rule}
    assert 443 in ports
    with pytest.raises(subprocess.CalledProcessError) as refused:
        render(helm, GPU, "auth.mode=dev", "auth.devTokensSecret=dev", *sets)
    assert "web.oidc needs auth.mode jwt" in refused.value.stderr
