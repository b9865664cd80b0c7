{{/*
A Ray cluster spec (KubeRay headGroupSpec + one GPU workerGroupSpec), shared by the inference
RayService and the training RayCluster. ctx: root, component, workers (values), extraEnv
(optional: more environment for every Ray container), serve (true for the RayService).
GPUs are requested by the workers only; heads and service pods never ask for one.

What the operator adds is fixed here, where the chart can (tests/chart/kuberay_operator.py models
it): the autoscaler sidecar gets the restricted security context and pull policy through
autoscalerOptions; Ray token auth reads the chart's Secret (authOptions); the Ray containers carry
their own HTTP probes, because KubeRay's readiness probe for a RayService's workers runs wget, which
our images lack; pods carry `atlasloop.io/ray-cluster`, because a RayService names its cluster
with a random suffix, so `ray.io/cluster` cannot be selected on in advance.
*/}}
{{- define "atlasloop.rayClusterSpec" -}}
{{- $root := .root }}
{{- $sel := dict "root" $root "component" .component }}
rayVersion: {{ $root.Values.ray.version | quote }}
enableInTreeAutoscaling: true
autoscalerOptions:
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  resources:
    {{- toYaml $root.Values.ray.autoscaler.resources | nindent 4 }}
  securityContext:
    {{- include "atlasloop.containerSecurityContext" $root | nindent 4 }}
{{- if $root.Values.ray.auth.enabled }}
authOptions:
  mode: token
  secretName: {{ include "atlasloop.rayAuthSecret" $root }}
{{- end }}
headGroupSpec:
  rayStartParams:
    dashboard-host: "0.0.0.0"
    num-gpus: "0"
  template:
    metadata:
      labels:
        {{- include "atlasloop.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}-ray-head
        atlasloop.io/ray-cluster: {{ .component }}
    spec:
      securityContext:
        {{- include "atlasloop.podSecurityContext" $root | nindent 8 }}
      {{- include "atlasloop.pullSecrets" $root | nindent 6 }}
      containers:
        - name: ray-head
          image: {{ include "atlasloop.image" $sel }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - {name: gcs-server, containerPort: 6379}
            - {name: dashboard, containerPort: 8265}
            - {name: client, containerPort: 10001}
            - {name: serve, containerPort: 8000}
            - {name: metrics, containerPort: 8080}
          env:
            {{- include "atlasloop.settingsEnv" (dict "root" $root "component" .component "port" (index $root.Values.services .component).port) | nindent 12 }}
            {{- with .extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- include "atlasloop.rayProbes" (dict "readinessPort" 52365 "readinessPath" "/api/healthz") | nindent 10 }}
          resources:
            {{- toYaml $root.Values.ray.head.resources | nindent 12 }}
          securityContext:
            {{- include "atlasloop.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: shm, mountPath: /dev/shm}
            {{- include "atlasloop.securityMounts" $root | nindent 12 }}
      volumes:
        - {name: tmp, emptyDir: {sizeLimit: 20Gi}}
        - {name: shm, emptyDir: {medium: Memory, sizeLimit: 4Gi}}
        {{- include "atlasloop.securityVolumes" $root | nindent 8 }}
workerGroupSpecs:
  - groupName: gpu
    replicas: {{ .workers.replicas }}
    minReplicas: {{ .workers.minReplicas }}
    maxReplicas: {{ .workers.maxReplicas }}
    rayStartParams:
      num-gpus: {{ .workers.gpusPerWorker | quote }}
    template:
      metadata:
        labels:
          {{- include "atlasloop.labels" $root | nindent 10 }}
          app.kubernetes.io/component: {{ .component }}-ray-gpu-worker
          atlasloop.io/ray-cluster: {{ .component }}
      spec:
        # Workers never call the Kubernetes API (the head's autoscaler does).
        automountServiceAccountToken: false
        securityContext:
          {{- include "atlasloop.podSecurityContext" $root | nindent 10 }}
        {{- include "atlasloop.pullSecrets" $root | nindent 8 }}
        {{- if gt (int .workers.gpusPerWorker) 0 }}
        {{- with $root.Values.ray.gpuNodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $root.Values.ray.gpuTolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ include "atlasloop.image" (merge (dict "variant" (ternary "cuda" "" (gt (int .workers.gpusPerWorker) 0))) $sel) }}
            imagePullPolicy: {{ $root.Values.image.pullPolicy }}
            ports:
              - {name: metrics, containerPort: 8080}
            env:
              {{- include "atlasloop.settingsEnv" (dict "root" $root "component" .component "port" (index $root.Values.services .component).port) | nindent 14 }}
              {{- with .extraEnv }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
            {{- /* A serving worker is ready when Serve's proxy on it answers (KubeRay's own rule, as HTTP). */}}
            {{- $readiness := ternary (dict "readinessPort" 8000 "readinessPath" "/-/healthz") (dict "readinessPort" 52365 "readinessPath" "/api/healthz") (default false .serve) }}
            {{- include "atlasloop.rayProbes" $readiness | nindent 12 }}
            resources:
              requests:
                {{- toYaml .workers.resources.requests | nindent 16 }}
                {{- if gt (int .workers.gpusPerWorker) 0 }}
                nvidia.com/gpu: {{ .workers.gpusPerWorker }}
                {{- end }}
              limits:
                {{- toYaml .workers.resources.limits | nindent 16 }}
                {{- if gt (int .workers.gpusPerWorker) 0 }}
                nvidia.com/gpu: {{ .workers.gpusPerWorker }}
                {{- end }}
            securityContext:
              {{- include "atlasloop.containerSecurityContext" $root | nindent 14 }}
            volumeMounts:
              - {name: tmp, mountPath: /tmp}
              - {name: shm, mountPath: /dev/shm}
              {{- include "atlasloop.securityMounts" $root | nindent 14 }}
        volumes:
          - {name: tmp, emptyDir: {sizeLimit: 50Gi}}
          - {name: shm, emptyDir: {medium: Memory, sizeLimit: 16Gi}}
          {{- include "atlasloop.securityVolumes" $root | nindent 10 }}
{{- end }}

{{/* Probes of a Ray container, over HTTP (no wget or curl in our images): liveness is the node's
unified health endpoint on the dashboard agent (Ray >= 2.53); readiness is given (ctx:
readinessPort, readinessPath). KubeRay adds its own only where these are absent. */}}
{{- define "atlasloop.rayProbes" -}}
livenessProbe:
  httpGet: {path: /api/healthz, port: 52365}
  initialDelaySeconds: 30
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 120
readinessProbe:
  httpGet: {path: {{ .readinessPath }}, port: {{ .readinessPort }}}
  initialDelaySeconds: 10
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 10
{{- end }}
