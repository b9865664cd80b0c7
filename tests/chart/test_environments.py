"""The shipped environments (deploy/values, with the CI values they extend) are coherent: each
service's NetworkPolicy lets it reach the Kafka and S3 ports its own settings name (the page:
every service it calls), so a change of
listener (Strimzi's TLS port) or endpoint cannot leave the services cut off."""

from __future__ import annotations

import json

import pytest

from .rendering import CHART, CI, REPO, render, settings_class

ENVIRONMENTS = {
    "production": (CHART / "ci" / "gpu-8-values.yaml", REPO / "deploy" / "values" / "production.yaml"),
    "staging": (REPO / "deploy" / "values" / "staging.yaml",),
    **{p.stem: (p,) for p in CI},
}


def _port(endpoint: str, default: int) -> int:
    host, _, port = endpoint.rpartition(":")
    return int(port) if host and port.isdigit() else default


@pytest.mark.parametrize("files", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def test_each_service_may_reach_the_kafka_and_s3_ports_it_is_configured_for(helm, files):
    documents = render(helm, files)
    policies = {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}
    checked = 0
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"].split("_", 2)[-1]: e.get("value") for e in container["env"]}
        component = deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        fields = settings_class(component).model_fields  # what the service itself reads
        wanted = set()
        if component == "web":  # the page calls every service it names
            wanted = {_port(target, 0) for target in json.loads(env["TARGETS"]).values()}
            assert len(wanted) == 6
        if "s3" in fields:  # tracking reads through storage
            wanted.add(_port(env["S3__ENDPOINT"], 443 if env["S3__SECURE"] == "true" else 80))
        if "kafka" in fields:  # rendering and scoring publish and consume nothing
            wanted |= {_port(server, 9092) for server in env["KAFKA__BOOTSTRAP_SERVERS"].split(",")}
        allowed = {
            port["port"]
            for rule in policies[deployment["metadata"]["name"]]["spec"]["egress"]
            for port in rule.get("ports") or []
        }
        assert wanted <= allowed, (deployment["metadata"]["name"], sorted(wanted - allowed))
        checked += 1
    assert checked == 7  # six services and the page
