"""The prerequisite manifests an infra engineer applies (deploy/prerequisites) use the API versions
today's operators serve, and create every topic the code publishes to: production runs with
kafka.createTopics=false, where a missing topic (the dead-letter one was) leaves events nowhere."""

from __future__ import annotations

from pathlib import Path

import yaml

from atlasloop.common import dead_letters
from atlasloop.common.events import TOPICS

PREREQUISITES = Path(__file__).resolve().parents[2] / "deploy" / "prerequisites"
# What the operators' current releases serve: Strimzi 0.49 added kafka.strimzi.io/v1 and 1.0 serves
# nothing else; CloudNativePG serves postgresql.cnpg.io/v1.
SERVED = {"kafka.strimzi.io": {"v1"}, "postgresql.cnpg.io": {"v1"}}


def _resources() -> list[dict]:
    return [doc for path in sorted(PREREQUISITES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_every_custom_resource_uses_an_api_version_its_operator_serves():
    custom = [d for d in _resources() if "apiVersion" in d and "/" in d["apiVersion"]]
    assert {d["apiVersion"].split("/")[0] for d in custom} == set(SERVED)
    stale = [
        (d["kind"], d["apiVersion"])
        for d in custom
        if d["apiVersion"].split("/")[1] not in SERVED[d["apiVersion"].split("/")[0]]
    ]
    assert stale == []
    for user in (d for d in custom if d["kind"] == "KafkaUser"):  # v1 knows only `operations`
        assert all("operation" not in acl for acl in user["spec"]["authorization"]["acls"])


def test_strimzi_creates_every_topic_the_code_uses():
    topics = {d["metadata"]["name"] for d in _resources() if d.get("kind") == "KafkaTopic"}
    assert topics == set(TOPICS.values()) | {dead_letters.TOPIC}


def test_the_services_connect_over_tls_with_a_scram_user():
    kafka = next(d for d in _resources() if d.get("kind") == "Kafka")
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert all(listener["tls"] for listener in listeners)  # no plaintext listener to fall back to
    assert {listener["authentication"]["type"] for listener in listeners} == {"scram-sha-512"}
    user = next(d for d in _resources() if d.get("kind") == "KafkaUser")
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
