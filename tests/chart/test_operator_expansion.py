"""The chart as the KubeRay operator expands it (``kuberay_operator.expand``): every container,
injected ones included, passes Pod Security ``restricted`` as checkov judges it; every pod can pull
its images; every NetworkPolicy selects exactly the pods it is written for and no Ray pod is left
unprotected; Ray requires a token from a Secret the services share; the monitors select objects
that exist; probes run in our images; an upgrade keeps names and selectors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .kuberay_operator import Expanded, expand, selects
from .rendering import CHART, CI, REPO, render

# Pod Security Standards "restricted" (and "baseline", which it includes), as checkov's checks:
# privileged, host namespaces and ports, privilege escalation, root, added and kept capabilities,
# NET_RAW, seccomp; plus what the chart promises beyond the standard: read-only root filesystems,
# a high UID, CPU and memory requests and limits on every container.
RESTRICTED = {
    "CKV_K8S_16": "privileged",
    "CKV_K8S_17": "host PID",
    "CKV_K8S_18": "host IPC",
    "CKV_K8S_19": "host network",
    "CKV_K8S_20": "allowPrivilegeEscalation",
    "CKV_K8S_23": "root",
    "CKV_K8S_25": "added capabilities",
    "CKV_K8S_26": "host port",
    "CKV_K8S_28": "NET_RAW",
    "CKV_K8S_31": "seccomp",
    "CKV_K8S_37": "capabilities not dropped",
    "CKV_K8S_22": "writable root filesystem",
    "CKV_K8S_40": "low UID",
    "CKV_K8S_10": "CPU request",
    "CKV_K8S_11": "CPU limit",
    "CKV_K8S_12": "memory request",
    "CKV_K8S_13": "memory limit",
}
GPU = next(p for p in CI if p.stem == "gpu-8-values")  # the install the tests below expand
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PodMonitor")


def expanded(helm: str, values: Path | None = None, *sets: str, api_versions: tuple[str, ...] = ()) -> Expanded:
    return expand(render(helm, values, *sets, api_versions=api_versions))


def containers(pod: dict):
    yield from pod["spec"].get("initContainers") or []
    yield from pod["spec"]["containers"]


def ray_pods(result: Expanded) -> list[dict]:
    return [p for p in result.pods if p["metadata"]["labels"].get("ray.io/is-ray-node") == "yes"]


@pytest.mark.parametrize("values", CI, ids=[p.stem for p in CI])
def test_every_expanded_container_passes_pod_security_restricted(helm, checkov, values, tmp_path):
    """One Pod per container (init containers too), so that checkov's verdict names the container;
    every chosen check must run on every one of them, or the scan proves nothing."""
    result = expanded(helm, values)
    names = []
    for pod in result.pods:
        for container in containers(pod):
            name = f"{pod['metadata']['name']}--{container['name']}"
            single = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": pod["metadata"]["namespace"]},
                "spec": {k: v for k, v in pod["spec"].items() if k != "initContainers"} | {"containers": [container]},
            }
            (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(single))
            names.append(name)
    assert any(n.endswith("--autoscaler") for n in names) and any(n.endswith("--wait-gcs-ready") for n in names)
    command = [checkov, "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json", "--compact"]
    command += ["--skip-download", "--check", ",".join(RESTRICTED)]
    run = subprocess.run(
        command, capture_output=True, text=True, env=os.environ | {"BC_SKIP_MAPPING": "TRUE"}, timeout=300
    )
    report = json.loads(run.stdout)["results"]
    ran: dict[str, set[str]] = {n: set() for n in names}
    for check in report["passed_checks"] + report["failed_checks"]:
        ran[check["resource"].split(".")[-1]].add(check["check_id"])
    assert {n: set(RESTRICTED) - got for n, got in ran.items() if set(RESTRICTED) - got} == {}
    failed = sorted(f"{c['resource'].split('.')[-1]}: {RESTRICTED[c['check_id']]}" for c in report["failed_checks"])
    assert failed == []


def test_every_pod_can_pull_its_images(helm):
    result = expanded(helm, GPU, "image.pullSecrets={regcred,mirror}")
    missing = [
        p["metadata"]["name"]
        for p in result.pods
        if [s["name"] for s in p["spec"].get("imagePullSecrets") or []] != ["regcred", "mirror"]
    ]
    assert len(result.pods) >= 10 and missing == []
    rendered = render(helm, GPU, "image.pullSecrets={regcred,mirror}")
    job = next(d for d in rendered if d["kind"] == "Job")  # the migrations hook is a pod too
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]


def _policies(documents: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}


def _owner(pod: dict) -> str:
    """The component a pod belongs to, from the chart's labels."""
    labels = pod["metadata"]["labels"]
    return (
        labels.get("atlasloop.io/ray-cluster", "") + "-ray"
        if "ray.io/cluster" in labels
        else labels.get("app.kubernetes.io/component", "")
    )


@pytest.mark.parametrize("values", CI, ids=[p.stem for p in CI])
def test_network_policies_select_exactly_their_pods_and_ray_is_covered(helm, values):
    documents = render(helm, values)
    result = expand(documents)
    policies = _policies(documents)
    uncovered = [
        p["metadata"]["name"]
        for p in result.pods
        if p["metadata"]["labels"].get("app.kubernetes.io/component") != "migrations"
        and not any(selects(n["spec"]["podSelector"], p["metadata"]["labels"]) for n in policies.values())
    ]
    assert uncovered == []
    for name, policy in policies.items():
        chosen = {_owner(p) for p in result.pods if selects(policy["spec"]["podSelector"], p["metadata"]["labels"])}
        assert chosen == {name.removeprefix("atlasloop-")}, name
    # egress to a Ray cluster reaches that cluster's pods, all of them and no others
    for service in ("inference", "training"):
        rules = policies[f"atlasloop-{service}"]["spec"]["egress"]
        to_ray = [
            peer["podSelector"]
            for rule in rules
            for peer in rule.get("to") or []
            if {"ray.io/cluster", "atlasloop.io/ray-cluster"} & set(peer.get("podSelector", {}).get("matchLabels", {}))
        ]
        assert to_ray, f"{service} has no egress to its Ray cluster"
        for selector in to_ray:
            reached = {_owner(p) for p in result.pods if selects(selector, p["metadata"]["labels"])}
            assert reached == {f"{service}-ray"}, (service, selector)


@pytest.mark.parametrize("values", CI, ids=[p.stem for p in CI])
def test_ray_pods_take_only_the_traffic_they_need(helm, values):
    """Only the cluster's own pods reach every port; the service that drives a cluster reaches the
    dashboard (Jobs API, Serve deploys) and, for inference, Serve's proxy; nothing else does."""
    documents = render(helm, values)
    result = expand(documents)
    policies = _policies(documents)
    for component, callers, ports in (
        ("inference", {"inference"}, {8265, 8000}),
        ("training", {"training"}, {8265}),
    ):
        policy = policies[f"atlasloop-{component}-ray"]
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        opened: dict[int | str, set[str]] = {}
        for rule in policy["spec"]["ingress"]:
            assert rule.get("from"), f"{component}-ray: an ingress rule open to every pod and namespace"
            peers = {
                _owner(p)
                for p in result.pods
                for peer in rule.get("from") or []
                if "podSelector" in peer
                and "namespaceSelector" not in peer
                and selects(peer["podSelector"], p["metadata"]["labels"])
            }
            for port in rule.get("ports") or [{"port": "any"}]:
                opened.setdefault(port["port"], set()).update(peers)
        assert opened.pop("any") == {f"{component}-ray"}  # the cluster itself: GCS, raylets, object store
        assert {p for p, who in opened.items() if who} == ports
        assert set().union(*(who for who in opened.values() if who)) == callers
        # out: the cluster, the storage service, and S3 and Kafka where the values put them (the
        # Serve replicas and training runs write through storage and publish their events)
        peers = [peer for rule in policy["spec"]["egress"] for peer in rule.get("to") or []]
        reached = {
            _owner(p)
            for p in result.pods
            for peer in peers
            if "podSelector" in peer and selects(peer["podSelector"], p["metadata"]["labels"])
        }
        assert reached == {f"{component}-ray", "storage"}
        defaults = yaml.safe_load((CHART / "values.yaml").read_text())["networkPolicy"]
        network = defaults | (yaml.safe_load(values.read_text()).get("networkPolicy") or {})
        for dependency in ("s3", "kafka"):
            assert all(peer in peers for peer in network[dependency]["peers"]), (component, dependency)


def test_ray_requires_a_token_the_services_share(helm):
    documents = render(helm, GPU)
    result = expand(documents)
    secret = next(d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"] == "atlasloop-ray-auth")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    reference = {"secretKeyRef": {"name": "atlasloop-ray-auth", "key": "auth_token"}}
    for pod in ray_pods(result):
        for container in containers(pod):
            env = {e["name"]: e for e in container.get("env") or []}
            assert env["RAY_AUTH_MODE"].get("value") == "token", (pod["metadata"]["name"], container["name"])
            assert env["RAY_AUTH_TOKEN"].get("valueFrom") == reference, (pod["metadata"]["name"], container["name"])
    for service in ("inference", "training"):
        pod = next(p for p in result.pods if p["metadata"]["name"] == f"atlasloop-{service}-pod")
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env[f"ATLASLOOP_{service.upper()}_RAY_AUTH_TOKEN"]["valueFrom"] == reference
    # a Secret of one's own is used as it is, and the chart then makes none
    documents = render(helm, GPU, "ray.auth.existingSecret=site-ray-token")
    assert not any(d["kind"] == "Secret" and d["metadata"]["name"] == "atlasloop-ray-auth" for d in documents)
    for pod in ray_pods(expand(documents)):
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "site-ray-token"


def test_monitors_select_objects_that_exist_on_their_metrics_port(helm):
    documents = render(helm, GPU, api_versions=MONITORING_APIS)
    result = expand(documents)
    monitors = [d for d in documents if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert {m["kind"] for m in monitors} == {"ServiceMonitor", "PodMonitor"}
    for monitor in monitors:
        selector = monitor["spec"]["selector"]
        if monitor["kind"] == "ServiceMonitor":
            chosen = [s for s in result.services if selects(selector, s["metadata"].get("labels") or {})]
            ports = [{p["name"] for p in s["spec"]["ports"]} for s in chosen]
            wanted = {e["port"] for e in monitor["spec"]["endpoints"]}
        else:
            chosen = [p for p in result.pods if selects(selector, p["metadata"]["labels"])]
            ports = [{port["name"] for c in p["spec"]["containers"] for port in c.get("ports") or []} for p in chosen]
            wanted = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
        assert chosen, f"{monitor['kind']} {monitor['metadata']['name']} selects nothing"
        assert all(wanted <= have for have in ports), monitor["metadata"]["name"]
    pod_monitored = [
        p
        for m in monitors
        if m["kind"] == "PodMonitor"
        for p in result.pods
        if selects(m["spec"]["selector"], p["metadata"]["labels"])
    ]
    assert {p["metadata"]["name"] for p in pod_monitored} == {p["metadata"]["name"] for p in ray_pods(result)}


def _image_tools() -> set[str]:
    """Programs a probe may run in our images: the slim Python base's shell, and Python."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "python:3.11-slim" in dockerfile
    runtime = dockerfile.rsplit("FROM ", 1)[1]
    installed = {"wget", "curl"} & set(runtime.replace("\\", " ").split()) if "apt-get install" in runtime else set()
    return {"bash", "sh", "python", "python3", "grep"} | installed


def test_probes_run_in_our_images(helm):
    tools = _image_tools()
    result = expanded(helm, GPU)
    for pod in result.pods:
        for container in pod["spec"]["containers"]:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                command = (container.get(probe) or {}).get("exec", {}).get("command")
                if not command:
                    continue
                words = " ".join(command).replace("&&", " ").replace("|", " ").split()
                used = {w for w in words if w in {"wget", "curl", "nc", "ray"}} | {command[0]}
                assert used <= tools, (pod["metadata"]["name"], container["name"], probe, sorted(used - tools))


def test_an_upgrade_keeps_names_and_selectors(helm):
    """Selectors of Deployments are immutable and Services and policies must keep their pods:
    a new tag, replica counts and chart values must not move them."""

    def shape(documents: list[dict]) -> dict:
        out = {}
        for d in documents:
            spec = d.get("spec") or {}
            selector = spec.get("selector") or spec.get("podSelector")
            out[(d["kind"], d["metadata"]["name"])] = json.dumps(selector, sort_keys=True)
        return out

    before = shape(render(helm, GPU))
    after = shape(
        render(helm, GPU, "image.tag=0.2.0", "services.storage.replicas=3", "ray.inference.workers.replicas=4")
    )
    assert before == after
