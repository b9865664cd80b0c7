"""The Helm chart, rendered for real: the schema refuses wrong types, GPUs are requested only by
the Ray workers, every container is explicit and restricted, and the KubeRay resources validate
against KubeRay's own CRD schemas (tests/data/crds, copied from KubeRay with its licence)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from .rendering import CHART, CI, pods, render


def test_schema_refuses_a_wrong_value_type(helm):
    result = subprocess.run(
        [helm, "template", "atlasloop", str(CHART), "-f", str(CI[0]), "--set", "services.storage.replicas=two"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "replicas" in result.stderr and "want integer" in result.stderr
    result = subprocess.run(
        [helm, "template", "atlasloop", str(CHART), "-f", str(CI[0]), "--set", "kafka.securityProtocol=TELEPATHY"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "securityProtocol" in result.stderr


def test_gpu_install_requests_gpus_only_for_ray_workers(helm):
    documents = render(helm, CHART / "ci" / "gpu-8-values.yaml")
    with_gpu = sorted(
        owner
        for owner, spec in pods(documents)
        for c in spec["containers"]
        if "nvidia.com/gpu" in c["resources"].get("limits", {})
    )
    assert with_gpu == ["RayCluster/atlasloop-training/gpu", "RayService/atlasloop-inference/gpu"]
    for owner, spec in pods(documents):
        if owner.endswith("/gpu"):
            assert spec["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"  # merged with defaults
            assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    cpu_only = render(helm, CHART / "ci" / "cpu-small-values.yaml")
    assert not [o for o, spec in pods(cpu_only) for c in spec["containers"] if "nvidia.com/gpu" in str(c["resources"])]


@pytest.mark.parametrize("values", CI, ids=[p.stem for p in CI])
def test_every_container_is_explicit_restricted_and_probed(helm, values):
    documents = render(helm, values)
    checked = 0
    for owner, spec in pods(documents):
        assert spec["securityContext"]["runAsNonRoot"] is True, owner
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        for container in spec["containers"]:
            checked += 1
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"], owner
            if owner.endswith("-web"):  # the page: HTTP, probed on its own /healthz
                assert [p["name"] for p in container["ports"]] == ["http"]
                for probe in ("readinessProbe", "livenessProbe"):
                    assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
            elif owner.startswith("Deployment/"):
                assert container["readinessProbe"]["grpc"]["service"] == ""
                assert container["livenessProbe"]["grpc"]["service"] == "atlasloop.liveness"
                assert container["ports"][0]["name"] == "grpc"
                # probes on their own port and threads, never the work port
                probe_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "probe")
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    assert container[probe]["grpc"]["port"] == probe_port != container["ports"][0]["containerPort"]
                env = {e["name"].split("_", 2)[-1]: e.get("value") for e in container["env"]}
                assert env["PROBE_PORT"] == str(probe_port)
    assert checked >= 10
    services = [d for d in documents if d["kind"] == "Service" and not d["metadata"]["name"].endswith("-web")]
    for service in services:  # gRPC for clients, /metrics for Prometheus, nothing else
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert set(ports) == {"grpc", "metrics"} and ports["grpc"]["appProtocol"] == "grpc", service["metadata"]
        assert service["metadata"]["labels"]["atlasloop.io/metrics"] == "true"
    policies = {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}
    deployments = {d["metadata"]["name"] for d in documents if d["kind"] == "Deployment"}
    assert deployments <= set(policies)
    for name in deployments - {"atlasloop-web"}:  # the metrics port is open to the scrapers' namespaces only
        rules = policies[name]["spec"]["ingress"]
        metrics = [r for r in rules if r["ports"] == [{"port": "metrics", "protocol": "TCP"}]]
        assert len(metrics) == 1 and all("namespaceSelector" in peer for peer in metrics[0]["from"]), name


def _served_schema(crd_file: Path) -> dict:
    crd = yaml.safe_load(crd_file.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def _strict(schema: dict) -> dict:
    """OpenAPI objects with properties reject unknown keys, as the API server's pruning would drop them."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@pytest.mark.parametrize("values", CI, ids=[p.stem for p in CI])
def test_ray_resources_validate_against_kuberay_crds(helm, crds, values):
    schemas = {
        "RayService": _strict(_served_schema(crds / "ray.io_rayservices.yaml")),
        "RayCluster": _strict(_served_schema(crds / "ray.io_rayclusters.yaml")),
    }
    documents = [d for d in render(helm, values) if d["kind"] in schemas]
    assert {d["kind"] for d in documents} == {"RayService", "RayCluster"}
    for doc in documents:
        jsonschema.validate(doc, schemas[doc["kind"]])
    service = next(d for d in documents if d["kind"] == "RayService")
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert [d["name"] for d in serve["applications"][0]["deployments"]] == ["swin_unetr", "dynunet", "unet"]


def test_crd_validation_catches_a_wrong_field(crds):
    schema = _strict(_served_schema(crds / "ray.io_rayclusters.yaml"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "metadata": {"name": "x"},
                "spec": {"headGroupSpec": {"rayStartParams": {}, "template": {}}, "bogus": 1},
            },
            schema,
        )


def test_each_service_calls_the_others_with_its_own_identity(helm):
    """Storage decides who may write which label versions from the caller's identity, so every pod
    of a calling service (its Deployment and its Ray pods) presents that service's own token, and
    training can reach tracking to confirm approvals."""
    documents = render(helm, CI[0])
    seen = {}
    for owner, spec in pods(documents):
        for container in spec["containers"]:
            for e in container.get("env", []):
                ray_token = e["name"].endswith("_RAY_AUTH_TOKEN")  # Ray's own, test_operator_expansion
                if e["name"].endswith("_TOKEN") and "secretKeyRef" in e.get("valueFrom", {}) and not ray_token:
                    service = e["name"].split("_")[1].lower()
                    assert e["valueFrom"]["secretKeyRef"]["key"] == service, (owner, e["name"])
                    seen.setdefault(service, set()).add(owner.split("/")[0])
    assert set(seen) == {"inference", "tracking", "training"}
    assert "RayService" in seen["inference"] and {"Deployment", "RayCluster"} <= seen["training"]
    training = next(
        spec for owner, spec in pods(documents) if owner.endswith("-training") and owner.startswith("Deployment/")
    )
    env = {e["name"]: e for c in training["containers"] for e in c["env"]}
    assert env["ATLASLOOP_TRAINING_TRACKING_TARGET"]["value"] == "atlasloop-tracking:50055"
    policy = next(
        d for d in documents if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "atlasloop-training"
    )
    peers = [p for rule in policy["spec"]["egress"] for p in rule.get("to", [])]
    assert {"app.kubernetes.io/component": "tracking", "app.kubernetes.io/instance": "atlasloop"} in [
        p.get("podSelector", {}).get("matchLabels") for p in peers
    ]


def test_serve_replicas_reach_the_storage_service_without_credentials_in_the_rayservice(helm):
    """The ensemble's Ray pods write outputs through the storage service: target and token come
    from the environment (the token from its secret); serveConfigV2 holds no credential."""
    documents = render(helm, CI[0])
    ray_pods = [(o, spec) for o, spec in pods(documents) if o.startswith("RayService/")]
    assert ray_pods
    for owner, spec in ray_pods:
        env = {e["name"]: e for c in spec["containers"] for e in c["env"]}
        assert env["ATLASLOOP_INFERENCE_STORAGE_TARGET"]["value"] == "atlasloop-storage:50051", owner
        assert env["ATLASLOOP_INFERENCE_STORAGE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "inference", owner
    service = next(d for d in documents if d["kind"] == "RayService")
    assert "token" not in service["spec"]["serveConfigV2"].lower()
    assert "secret" not in service["spec"]["serveConfigV2"].lower()


def test_an_inference_upgrade_needs_no_second_cluster_of_gpus_unless_asked(helm):
    """KubeRay's default (NewCluster) keeps the old cluster serving while a full new one starts:
    every GPU twice. The chart chooses None (model sets load in place; an image upgrade replaces
    the cluster, deploy/README.md) and takes NewCluster only when asked."""
    for values in CI:
        (service,) = [d for d in render(helm, values) if d["kind"] == "RayService"]
        assert service["spec"]["upgradeStrategy"] == {"type": "None"}, values.name
    (service,) = [
        d for d in render(helm, CI[0], "ray.inference.upgradeStrategy=NewCluster") if d["kind"] == "RayService"
    ]
    assert service["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    with pytest.raises(subprocess.CalledProcessError) as refused:
        render(helm, CI[0], "ray.inference.upgradeStrategy=Blue")
    assert "upgradeStrategy" in refused.value.stderr


def test_every_atlasloop_process_labels_the_same_schema(helm):
    """A project has one label schema: every container that runs AtlasLoop code (the services,
    the web page, the Ray head and workers that serve and train) gets the chart's one value, and
    a value that is not a name or a path is refused."""
    documents = render(helm, CI[0], "labelSchema=abdomenatlas-1.1")
    schemas = {}
    for owner, spec in pods(documents):
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if any(name.startswith("ATLASLOOP_") for name in env):
                schemas[f"{owner}/{container['name']}"] = env.get("ATLASLOOP_LABEL_SCHEMA")
    kinds = {key.split("/")[0] for key in schemas}
    assert {"Deployment", "RayCluster", "RayService"} <= kinds and any(k.endswith("-web/web") for k in schemas), schemas
    assert set(schemas.values()) == {"abdomenatlas-1.1"}, schemas
    refused = subprocess.run(
        [helm, "template", "atlasloop", str(CHART), "--set", "labelSchema=a b"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "labelSchema" in refused.stderr
