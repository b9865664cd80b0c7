"""What the KubeRay operator makes of the chart's RayService and RayCluster, for the chart's tests.

No Kubernetes API server can be built or pulled on these machines, so the tests carry the
operator's behaviour themselves: ``expand`` turns the rendered chart into the pods and services
the operator would create, and the tests check those, not only what Helm renders.

The rules follow the KubeRay version the chart is tested against (CRDs in ``tests/data/crds`` from
ray-project/kuberay commit feeaf72, 2026-08-19; Ray 2.60 in the images). Each rule names the
function of ``ray-operator/controllers/ray/`` it follows. Functions, not line numbers: the
functions keep their names across releases while lines drift, and ``git grep`` finds them in any
checkout. When the chart moves to another KubeRay release, re-read these functions there and
update the rules that changed; the tests then say which of the chart's assumptions broke.

Only what the tests look at is modelled: names, labels, containers (their images, security
contexts, environment, resources, probes), volumes, pull secrets, service accounts, services and
their selectors. One pod stands for each worker group (its replicas are identical).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

NAMESPACE = "atlasloop"
RAYSERVICE_CLUSTER_SUFFIX = "x7k2p"  # utils.GenerateRayClusterName: rand.String(5), any five characters
UNIFIED_HEALTH_CHECK_RAY = (2, 53)  # common/pod.go supportsUnifiedHealthCheck
AGENT_PORT, DASHBOARD_PORT, SERVE_PORT, METRICS_PORT, GCS_PORT = 52365, 8265, 8000, 8080, 6379
WGET = "wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"  # utils.BaseWgetHealthCommand


@dataclass
class Expanded:
    """The objects the operator creates for one release."""

    pods: list[dict] = field(default_factory=list)  # kind Pod, metadata.name is the owner and group
    services: list[dict] = field(default_factory=list)


def expand(documents: list[dict]) -> Expanded:
    """The rendered chart plus what the operator adds; Deployments and Jobs become their pods."""
    out = Expanded()
    for doc in documents:
        kind = doc["kind"]
        if kind in ("Deployment", "Job"):
            out.pods.append(_workload_pod(doc))
        elif kind == "Service":
            out.services.append(doc)
        elif kind == "RayCluster":
            _cluster(doc, "RayCluster", out)
        elif kind == "RayService":
            cluster = _cluster_for_rayservice(doc)
            _cluster(cluster, "RayService", out)
            out.services += _rayservice_services(doc, cluster)
    return out


def _workload_pod(doc: dict) -> dict:
    template = doc["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{doc['metadata']['name']}-pod", "namespace": NAMESPACE, **_meta(template)},
        "spec": copy.deepcopy(template["spec"]),
    }


def _meta(template: dict) -> dict:
    meta = template.get("metadata") or {}
    return {"labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {})}


def _cluster_for_rayservice(service: dict) -> dict:
    """controllers/ray/rayservice_controller.go constructRayClusterForRayService: the cluster is
    named ``<rayservice>-raycluster-<5 random characters>`` (utils.GenerateRayClusterName) and
    carries the RayService's labels plus where it came from."""
    name = service["metadata"]["name"]
    labels = dict(service["metadata"].get("labels") or {})
    labels |= {"ray.io/originated-from-cr-name": name, "ray.io/originated-from-crd": "RayService"}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": f"{name}-raycluster-{RAYSERVICE_CLUSTER_SUFFIX}", "labels": labels},
        "spec": copy.deepcopy(service["spec"]["rayClusterConfig"]),
    }


def _cluster(cluster: dict, creator: str, out: Expanded) -> None:
    spec, name = cluster["spec"], cluster["metadata"]["name"]
    head_template = spec["headGroupSpec"]["template"]
    out.pods.append(_pod(cluster, head_template, "head", "headgroup", creator))
    for group in spec.get("workerGroupSpecs") or []:
        if int(group.get("maxReplicas", group.get("replicas", 0))) > 0:
            out.pods.append(_pod(cluster, group["template"], "worker", group["groupName"], creator))
    out.services.append(_head_service(name, head_template))


def _ray_version(cluster: dict) -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", str(cluster["spec"].get("rayVersion", "0.0"))).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def _pod(cluster: dict, template: dict, node_type: str, group: str, creator: str) -> dict:
    name, spec = cluster["metadata"]["name"], cluster["spec"]
    pod_spec = copy.deepcopy(template["spec"])
    ray = pod_spec["containers"][0]  # utils.RayContainerIndex
    labels = _label_pod(node_type, name, group, _meta(template)["labels"])
    if creator == "RayService":  # common/pod.go BuildPod: the serve label, managed for the head
        labels["ray.io/serve"] = "false" if node_type == "head" else "true"
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    if node_type == "head" and autoscaling:
        # common/pod.go DefaultHeadPodTemplate: the autoscaler sidecar (BuildAutoscalerContainer,
        # then mergeAutoscalerOverrides from spec.autoscalerOptions) and the head's service account.
        pod_spec["serviceAccountName"] = pod_spec.get("serviceAccountName") or name
        pod_spec["containers"].append(_autoscaler(ray["image"], spec.get("autoscalerOptions") or {}))
    if node_type == "worker":
        # common/pod.go DefaultWorkerPodTemplate: wait-gcs-ready, ENABLE_INIT_CONTAINER_INJECTION defaults true
        pod_spec.setdefault("initContainers", []).append(
            {
                "name": "wait-gcs-ready",
                "image": ray["image"],
                "imagePullPolicy": ray.get("imagePullPolicy"),
                "command": ["/bin/bash", "-lc", "--"],
                "args": [f"ray health-check --address {name}-head-svc.{NAMESPACE}.svc.cluster.local:{GCS_PORT}"],
                "securityContext": copy.deepcopy(ray.get("securityContext")),
                "env": copy.deepcopy(ray.get("env") or []),
                "volumeMounts": copy.deepcopy(ray.get("volumeMounts") or []),
                "resources": {
                    "limits": {"cpu": "200m", "memory": "256Mi"},
                    "requests": {"cpu": "200m", "memory": "256Mi"},
                },
            }
        )
    if not any(p.get("name") == "metrics" for p in ray.get("ports") or []):  # Default*PodTemplate
        ray.setdefault("ports", []).append({"name": "metrics", "containerPort": METRICS_PORT})
    auth = spec.get("authOptions") or {}
    if auth.get("mode") == "token":  # common/pod.go configureTokenAuth, SetContainerTokenAuthEnvVars
        secret = auth.get("secretName") or name
        targets = [ray] + [c for c in pod_spec["containers"] if c["name"] == "autoscaler"]
        targets += [c for c in pod_spec.get("initContainers") or [] if c["name"] == "wait-gcs-ready"]
        for container in targets:
            _set_env(container, {"name": "RAY_AUTH_MODE", "value": "token"})
            _set_env(
                container,
                {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "auth_token"}}},
            )
    # common/pod.go BuildPod: /dev/shm for the object store; a log volume shared with the autoscaler
    _add_empty_dir(pod_spec, ray, "shared-mem", "/dev/shm", "Memory")
    if node_type == "head" and autoscaling:
        _add_empty_dir(pod_spec, ray, "ray-logs", "/tmp/ray", None)
        _add_empty_dir(pod_spec, pod_spec["containers"][-1], "ray-logs", "/tmp/ray", None)
    ray["command"] = ["/bin/bash", "-lc", "--"]  # utils.GetContainerCommand, the generated `ray start`
    for env in (
        {"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}},
        {"name": "RAY_ADDRESS", "value": f"127.0.0.1:{GCS_PORT}"},
    ):
        _set_env(ray, env)
    _probes(ray, node_type, creator, _ray_version(cluster))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-{group}-pod", "namespace": NAMESPACE, "labels": labels},
        "spec": pod_spec,
    }


def _label_pod(node_type: str, cluster: str, group: str, template_labels: dict) -> dict:
    """common/pod.go labelPod: the operator's labels; the template's override all but three."""
    labels = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/identifier": f"{cluster}-{node_type}"[-63:],
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    for key, value in template_labels.items():
        if key not in ("ray.io/node-type", "ray.io/group", "ray.io/cluster"):
            labels[key] = value
    return labels


def _autoscaler(image: str, options: dict) -> dict:
    """common/pod.go BuildAutoscalerContainer and mergeAutoscalerOverrides: the Ray image, no
    security context of its own, 500m/512Mi; the options replace resources, image, pull policy,
    security context, command and args, and add env, envFrom and volume mounts."""
    container: dict = {
        "name": "autoscaler",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}},
            {"name": "RAY_CLUSTER_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "RAY_HEAD_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "KUBERAY_CRD_VER", "value": "v1"},
        ],
        "command": ["/bin/bash", "-lc", "--"],
        "args": [
            "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
        ],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "500m", "memory": "512Mi"}},
    }
    for key in ("resources", "image", "imagePullPolicy", "securityContext", "command", "args"):
        if options.get(key):
            container[key] = copy.deepcopy(options[key])
    for key in ("env", "envFrom", "volumeMounts"):
        if options.get(key):
            container[key] = container.get(key, []) + copy.deepcopy(options[key])
    return container


def _set_env(container: dict, env: dict) -> None:
    """utils.EnvVarExists: the operator never replaces a variable the template set."""
    present = {e["name"] for e in container.get("env") or []}
    if env["name"] not in present:
        container.setdefault("env", []).append(env)


def _add_empty_dir(pod_spec: dict, container: dict, volume: str, path: str, medium: str | None) -> None:
    """common/pod.go addEmptyDir: nothing when the container already mounts something at the path."""
    if any(m["mountPath"] == path for m in container.get("volumeMounts") or []):
        return
    container.setdefault("volumeMounts", []).append({"name": volume, "mountPath": path})
    if not any(v["name"] == volume for v in pod_spec.get("volumes") or []):
        source = {"medium": medium} if medium else {}
        pod_spec.setdefault("volumes", []).append({"name": volume, "emptyDir": source})


def _probes(ray: dict, node_type: str, creator: str, version: tuple[int, int]) -> None:
    """common/pod.go initLivenessAndReadinessProbe (ENABLE_PROBES_INJECTION defaults true): only
    where the template has none. Ray >= 2.53: HTTP GET /api/healthz on the dashboard agent, except
    the readiness of a RayService's workers, which is always a shell running wget against the
    raylet and Serve's proxy (utils.BaseWgetHealthCommand)."""
    http = {"httpGet": {"path": "/api/healthz", "port": AGENT_PORT}}
    raylet = WGET.format(timeout=1, port=AGENT_PORT, path="api/local_raylet_healthz")
    gcs = WGET.format(timeout=10, port=DASHBOARD_PORT, path="api/gcs_healthz")
    commands = [raylet, gcs] if node_type == "head" else [raylet]
    legacy = {"exec": {"command": ["bash", "-c", " && ".join(commands)]}}
    default = http if version >= UNIFIED_HEALTH_CHECK_RAY else legacy
    if ray.get("livenessProbe") is None:
        ray["livenessProbe"] = copy.deepcopy(default)
    if ray.get("readinessProbe") is None:
        ray["readinessProbe"] = copy.deepcopy(default)
        if creator == "RayService" and node_type == "worker":
            proxy = WGET.format(timeout=10, port=SERVE_PORT, path="-/healthz")
            ray["readinessProbe"] = {"exec": {"command": ["bash", "-c", " && ".join([*commands, proxy])]}}


def _head_service(cluster: str, head_template: dict) -> dict:
    """common/service.go BuildServiceForHeadPod and HeadServiceLabels: ``<cluster>-head-svc``
    (utils.GenerateHeadServiceName), labelled and selecting by the operator's labels only."""
    labels = {
        "ray.io/cluster": cluster,
        "ray.io/node-type": "head",
        "ray.io/identifier": f"{cluster}-head"[-63:],
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    ports = [
        {"name": p["name"], "port": p["containerPort"]}
        for p in head_template["spec"]["containers"][0].get("ports") or []
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{cluster}-head-svc", "labels": dict(labels)},
        "spec": {"selector": dict(labels), "ports": ports},
    }


def _rayservice_services(service: dict, cluster: dict) -> list[dict]:
    """common/service.go BuildHeadServiceForRayService and BuildServeService: the RayService keeps
    ``<name>-head-svc`` and ``<name>-serve-svc`` pointed at its active cluster."""
    name, active = service["metadata"]["name"], cluster["metadata"]["name"]
    origin = {"ray.io/originated-from-cr-name": name, "ray.io/originated-from-crd": "RayService"}
    head = _head_service(active, cluster["spec"]["headGroupSpec"]["template"])
    head["metadata"] = {
        "name": f"{name}-head-svc",
        "labels": origin | {"ray.io/node-type": "head", "ray.io/identifier": f"{name}-head"},
    }
    serve = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-serve-svc", "labels": origin | {"ray.io/serve": f"{name}-serve"}},
        "spec": {
            "selector": {"ray.io/cluster": active, "ray.io/serve": "true"},
            "ports": [{"name": "serve", "port": SERVE_PORT}],
        },
    }
    return [head, serve]


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a set of labels; an
    empty selector selects everything, as in a NetworkPolicy's podSelector."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
