"""The chart's security settings, as the services read them: gRPC (mutual) TLS, Kafka SASL and TLS,
and a private S3 CA reach every service and Ray container as settings the services' own classes
parse, from Secrets (never literal values), with every file they name mounted; an incomplete
setting fails the install with its reason; the GRPCRoute sends each gRPC service to its backend."""

from __future__ import annotations

import re

import pytest

from .kuberay_operator import expand
from .rendering import CHART, REPO, render, settings_class

HOSPITAL = CHART / "ci" / "external-managed-values.yaml"  # mutual TLS, SASL_SSL
EXTRA = ("s3.caSecret=hospital-s3-ca", "kafka.tls.caSecret=kafka-cluster-ca")


def _environment(container: dict) -> dict[str, str]:
    """The container's environment as the process sees it, each Secret read as a stand-in value."""
    env = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = "{}" if e["name"].endswith("DEV_TOKENS") else f"from-{ref['name']}-{ref['key']}"
    return env


def test_tls_sasl_and_cas_reach_every_service_and_ray_container_as_their_settings(helm, monkeypatch):
    documents = render(helm, HOSPITAL, *EXTRA)
    result = expand(documents)
    checked, with_kafka = 0, set()
    for pod in result.pods:
        labels = pod["metadata"]["labels"]
        component = labels.get("atlasloop.io/ray-cluster") or labels.get("app.kubernetes.io/component")
        if component == "migrations":
            continue
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        container = pod["spec"]["containers"][0]  # the service, or the Ray container
        env = _environment(container)
        prefix = f"ATLASLOOP_{component.upper()}_"
        # every file a setting names lies under a mount of a Secret
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        for name, value in env.items():
            if name.endswith("_FILE") and value.startswith("/etc/atlasloop/"):
                mount = next(path for path in mounts if value.startswith(path + "/"))
                assert "secret" in volumes[mounts[mount]] or "configMap" in volumes[mounts[mount]], name
        with monkeypatch.context() as patch:
            for name, value in env.items():
                if name.startswith(prefix):
                    patch.setenv(name, value)
            settings = settings_class(component)()
        if component != "web":  # the page serves HTTP behind the Ingress's TLS, and calls over mutual TLS
            assert settings.tls.enabled and settings.tls.require_client_cert, pod["metadata"]["name"]
        assert settings.client_tls.enabled and settings.client_tls.cert_file is not None
        fields = type(settings).model_fields
        if "kafka" in fields:  # rendering and scoring publish and consume nothing
            kafka = settings.kafka
            assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_username == "atlasloop"
            assert kafka.sasl_password.get_secret_value() == "from-atlasloop-kafka-scram-password"
            assert str(kafka.ssl_ca_file).startswith("/etc/atlasloop/kafka-ca/")
            with_kafka.add(component)
        if "s3" in fields:
            assert str(settings.s3.ca_file).startswith("/etc/atlasloop/s3-ca/")
        assert volumes["tls"]["secret"]["secretName"] == "atlasloop-grpc-tls"
        checked += 1
    assert checked == 11  # six services, the page, two Ray heads, two Ray worker groups
    assert {"storage", "tracking", "inference", "training"} <= with_kafka
    # no credential is written into a manifest
    text = "\n".join(str(d) for d in documents)
    assert "SASL_PASSWORD', 'value'" not in text


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("kafka.securityProtocol=SASL_SSL", "kafka.sasl.existingSecret="), "kafka.sasl.existingSecret"),
        (("kafka.securityProtocol=SASL_SSL", "kafka.sasl.username="), "kafka.sasl.username is required"),
        (("tls.enabled=true", "tls.secretName="), "tls.secretName"),
    ],
)
def test_an_incomplete_security_setting_fails_the_install_with_its_reason(helm, sets, message):
    import subprocess

    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(helm, HOSPITAL, *sets)
    assert message in failure.value.stderr


def test_the_grpc_route_sends_each_service_to_its_backend(helm):
    documents = render(
        helm,
        HOSPITAL,
        "gateway.enabled=true",
        "gateway.parentRefs[0].name=hospital-gateway",
        "gateway.hostnames[0]=atlasloop.hospital.example",
        api_versions=("gateway.networking.k8s.io/v1/GRPCRoute",),
    )
    route = next(d for d in documents if d["kind"] == "GRPCRoute")
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    declared = set()
    for proto in (REPO / "protos" / "atlasloop").glob("*/v1/*.proto"):
        text = proto.read_text()
        package = re.search(r"^package ([\w.]+);", text, re.M)
        declared |= (
            {f"{package.group(1)}.{name}" for name in re.findall(r"^service (\w+) \{", text, re.M)}
            if package
            else set()
        )
    routed = {}
    for rule in route["spec"]["rules"]:
        (match,) = rule["matches"]
        (backend,) = rule["backendRefs"]
        routed[match["method"]["service"]] = backend
        grpc_ports = {p["port"] for p in services[backend["name"]]["spec"]["ports"] if p["name"] == "grpc"}
        assert backend["port"] in grpc_ports, backend
    assert set(routed) == declared and len(routed) == 6
    assert route["spec"]["parentRefs"] == [{"name": "hospital-gateway"}]
    assert not any(
        d["kind"] == "GRPCRoute" for d in render(helm, HOSPITAL, "gateway.enabled=true", "gateway.parentRefs[0].name=g")
    )


PACS = (
    "pacs.url=https://pacs.hospital.example/dicom-web",
    "pacs.sendApproved=true",
    "pacs.existingSecret=pacs-login",
    "pacs.caSecret=pacs-ca",
    "pacs.timeoutSeconds=90",
    "dicom.deidentify=true",
    "dicom.deidentifyKeySecret=deid-key",
    "networkPolicy.pacs.peers[0].ipBlock.cidr=10.20.0.0/16",
)


def _storage(documents: list[dict]) -> tuple[dict, dict]:
    deployment = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "atlasloop-storage"
    )
    policy = next(d for d in documents if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "atlasloop-storage")
    return deployment["spec"]["template"]["spec"], policy


def test_the_pacs_and_deidentification_reach_storage_as_its_settings(helm, monkeypatch):
    pod, policy = _storage(render(helm, HOSPITAL, *PACS))
    container = pod["containers"][0]
    env = _environment(container)
    with monkeypatch.context() as patch:
        for name, value in env.items():
            if name.startswith("ATLASLOOP_STORAGE_"):
                patch.setenv(name, value)
        settings = settings_class("storage")()
    assert settings.pacs.url == "https://pacs.hospital.example/dicom-web" and settings.pacs.send_approved
    assert settings.pacs.username == "from-pacs-login-username" and settings.pacs.timeout_s == 90
    assert settings.pacs.password.get_secret_value() == "from-pacs-login-password"
    assert settings.deidentify and settings.deidentify_key.get_secret_value() == "from-deid-key-deidentifyKey"
    assert not settings.keep_patient_identifiers
    assert settings.tracking_target == "atlasloop-tracking:50055"
    assert settings.tracking_token == "from-atlasloop-service-token-storage"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "pacs-ca")
    assert settings.pacs.ca_file == mount["mountPath"] + "/ca.crt"
    assert next(v for v in pod["volumes"] if v["name"] == "pacs-ca")["secret"]["secretName"] == "pacs-ca"
    egress = policy["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 443, "protocol": "TCP"}]} in egress
    assert any(
        rule["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "tracking"
        for rule in egress
        if "to" in rule
    )
    assert "from-" not in str(render(helm, HOSPITAL))  # no PACS, no secret reference, no egress to it
    plain, plain_policy = _storage(render(helm, HOSPITAL))
    names = {e["name"] for e in plain["containers"][0]["env"]}
    assert not any("PACS" in n or "DEIDENTIFY" in n or "TRACKING" in n for n in names)
    assert len(plain_policy["spec"]["egress"]) == len(egress) - 2


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("dicom.deidentify=true",), "dicom.deidentifyKeySecret"),
        (("dicom.deidentify=true", "dicom.deidentifyKeySecret=k", "dicom.keepPatientIdentifiers=true"), "contradict"),
        (("pacs.sendApproved=true",), "pacs.sendApproved needs pacs.url"),
        (("pacs.url=ftp://pacs",), "/pacs/url"),
    ],
)
def test_an_incomplete_hospital_setting_fails_the_install_with_its_reason(helm, sets, message):
    import subprocess

    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(helm, HOSPITAL, *sets)
    assert message in failure.value.stderr
