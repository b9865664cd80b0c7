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
# nothing else; CloudNativePG serves postgresql.cnpg.io/v1 and its Barman Cloud plugin barmancloud.cnpg.io/v1.
SERVED = {"kafka.strimzi.io": {"v1"}, "postgresql.cnpg.io": {"v1"}, "barmancloud.cnpg.io": {"v1"}}


def _resources() -> list[dict]:
    return [
        doc
        for path in sorted(PREREQUISITES.glob("*.yaml"))
        if not path.name.endswith("-values.yaml")  # Helm values of other charts, not resources
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


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


def test_the_system_of_record_is_backed_up_where_the_store_keeps_it_and_can_be_restored():
    resources = _resources()
    cluster = next(d for d in resources if d["kind"] == "Cluster" and "recovery" not in d["spec"].get("bootstrap", {}))
    (archiver,) = [p for p in cluster["spec"]["plugins"] if p.get("isWALArchiver")]
    store_name = archiver["parameters"]["barmanObjectName"]
    store = next(d for d in resources if d["kind"] == "ObjectStore" and d["metadata"]["name"] == store_name)
    schedule = next(d for d in resources if d["kind"] == "ScheduledBackup")
    assert schedule["spec"]["cluster"]["name"] == cluster["metadata"]["name"] and schedule["spec"]["method"] == "plugin"
    assert len(schedule["spec"]["schedule"].split()) == 6  # CNPG's cron has a seconds field
    restore = next(d for d in resources if d["kind"] == "Cluster" and "recovery" in d["spec"].get("bootstrap", {}))
    (source,) = restore["spec"]["externalClusters"]
    assert source["name"] == restore["spec"]["bootstrap"]["recovery"]["source"]
    assert source["plugin"]["parameters"] == {"barmanObjectName": store_name, "serverName": cluster["metadata"]["name"]}
    # the in-cluster S3 creates the bucket the backups go to, and the one the chart's installs use
    seaweedfs = yaml.safe_load((PREREQUISITES / "seaweedfs-values.yaml").read_text())
    buckets = {b["name"] for b in seaweedfs["s3"]["createBuckets"]}
    production = yaml.safe_load((PREREQUISITES.parent / "values" / "production.yaml").read_text())
    assert store["spec"]["configuration"]["destinationPath"].split("/")[2] in buckets
    assert production["s3"]["bucket"] in buckets


def test_production_reaches_the_in_cluster_s3_the_way_it_serves():
    """deploy/values/production.yaml speaks HTTPS to the in-cluster S3 with a private CA: the S3
    prerequisite must serve HTTPS on that port (MinIO, as this guide once configured it, did not)."""
    production = yaml.safe_load((PREREQUISITES.parent / "values" / "production.yaml").read_text())["s3"]
    seaweedfs = yaml.safe_load((PREREQUISITES / "seaweedfs-values.yaml").read_text())["s3"]
    host, port = production["endpoint"].rsplit(":", 1)
    assert host.startswith("seaweedfs-s3.seaweedfs.svc")
    assert production["secure"] and production["caSecret"] and int(port) == seaweedfs["httpsPort"]
    assert any(arg.startswith("-cert.file=") for arg in seaweedfs["extraArgs"])
