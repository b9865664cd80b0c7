{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "atlasloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already holds the chart name. */}}
{{- define "atlasloop.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "atlasloop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels. */}}
{{- define "atlasloop.labels" -}}
helm.sh/chart: {{ include "atlasloop.chart" . }}
app.kubernetes.io/name: {{ include "atlasloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: atlasloop
{{- end }}

{{/* Selector labels of one component (ctx: dict root, component). */}}
{{- define "atlasloop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "atlasloop.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image (ctx: root, component, variant "" or "cuda"): pinned by image.digests["<component>"]
or ["<component>-cuda"] when given, else by tag (the CUDA variant's tag ends in -cuda). */}}
{{- define "atlasloop.image" -}}
{{- $cuda := eq (default "" .variant) "cuda" }}
{{- $name := printf "%s%s" .component (ternary "-cuda" "" $cuda) }}
{{- $digest := index (default dict .root.Values.image.digests) $name }}
{{- if $digest }}
{{- printf "%s/%s@%s" .root.Values.image.registry .component $digest }}
{{- else }}
{{- printf "%s/%s:%s%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag) (ternary "-cuda" "" $cuda) }}
{{- end }}
{{- end }}

{{/* Restricted pod security (Pod Security Standards "restricted"). */}}
{{- define "atlasloop.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "atlasloop.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Settings every service reads, as ATLASLOOP_<SERVICE>_* variables (ctx: root, component, port). */}}
{{- define "atlasloop.settingsEnv" -}}
{{- $p := printf "ATLASLOOP_%s_" (upper .component) }}
{{- $v := .root.Values }}
- {name: {{ $p }}HOST, value: "0.0.0.0"}
- {name: {{ $p }}PORT, value: {{ .port | quote }}}
- {name: {{ $p }}LOG_LEVEL, value: {{ $v.logLevel | quote }}}
- {name: ATLASLOOP_LABEL_SCHEMA, value: {{ $v.labelSchema | quote }}}
- {name: {{ $p }}METRICS_PORT, value: {{ $v.metrics.port | quote }}}
- {name: {{ $p }}PROBE_PORT, value: {{ $v.probes.port | quote }}}
- {name: {{ $p }}TRACING__EXPORTER, value: {{ $v.tracing.exporter | quote }}}
- {name: {{ $p }}TRACING__OTLP_ENDPOINT, value: {{ $v.tracing.otlpEndpoint | quote }}}
- {name: {{ $p }}TRACING__SAMPLE_RATIO, value: {{ $v.tracing.sampleRatio | quote }}}
- {name: {{ $p }}S3__ENDPOINT, value: {{ $v.s3.endpoint | quote }}}
- {name: {{ $p }}S3__SECURE, value: {{ $v.s3.secure | quote }}}
- {name: {{ $p }}S3__REGION, value: {{ $v.s3.region | quote }}}
- {name: {{ $p }}S3__BUCKET, value: {{ $v.s3.bucket | quote }}}
- {name: {{ $p }}S3__CREATE_BUCKET, value: {{ $v.s3.createBucket | quote }}}
- name: {{ $p }}S3__ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ include "atlasloop.s3Secret" .root }}, key: accessKey}}
- name: {{ $p }}S3__SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ include "atlasloop.s3Secret" .root }}, key: secretKey}}
- {name: {{ $p }}KAFKA__BOOTSTRAP_SERVERS, value: {{ $v.kafka.bootstrapServers | quote }}}
- {name: {{ $p }}KAFKA__SECURITY_PROTOCOL, value: {{ $v.kafka.securityProtocol | quote }}}
- {name: {{ $p }}KAFKA__TOPIC_PREFIX, value: {{ $v.kafka.topicPrefix | quote }}}
- {name: {{ $p }}KAFKA__CREATE_TOPICS, value: {{ $v.kafka.createTopics | quote }}}
- {name: {{ $p }}KAFKA__PARTITIONS, value: {{ $v.kafka.partitions | quote }}}
- {name: {{ $p }}AUTH__MODE, value: {{ $v.auth.mode | quote }}}
- name: {{ $p }}AUTH__GRANT_KEY
  valueFrom: {secretKeyRef: {name: {{ $v.auth.serviceTokenSecret }}, key: grantKey}}
{{- if eq $v.auth.mode "jwt" }}
- {name: {{ $p }}AUTH__JWKS_FILE, value: /etc/atlasloop/jwks/jwks.json}
- {name: {{ $p }}AUTH__ISSUER, value: {{ $v.auth.issuer | quote }}}
- {name: {{ $p }}AUTH__AUDIENCE, value: {{ $v.auth.audience | quote }}}
{{- else }}
- name: {{ $p }}AUTH__DEV_TOKENS
  valueFrom: {secretKeyRef: {name: {{ $v.auth.devTokensSecret }}, key: devTokens}}
{{- end }}
{{- include "atlasloop.securityEnv" (dict "root" .root "prefix" $p) }}
{{- range $key, $value := (index $v.services .component).env }}
- {name: {{ $p }}{{ $key }}, value: {{ $value | quote }}}
{{- end }}
{{- end }}

{{/*
TLS and credentials of every connection, as settings (ctx: root, prefix): gRPC TLS on the work port
and on calls to the other services (atlasloop.common.tls; the probe port stays plaintext, for
kubelet), Kafka SASL and TLS, and a private CA for S3. Files come from the volumes of
atlasloop.securityVolumes, mounted by atlasloop.securityMounts.
*/}}
{{- define "atlasloop.securityEnv" -}}
{{- $p := .prefix }}
{{- $v := .root.Values }}
{{- if $v.tls.enabled }}
- {name: {{ $p }}TLS__CERT_FILE, value: /etc/atlasloop/tls/tls.crt}
- {name: {{ $p }}TLS__KEY_FILE, value: /etc/atlasloop/tls/tls.key}
- {name: {{ $p }}CLIENT_TLS__ENABLED, value: "true"}
- {name: {{ $p }}CLIENT_TLS__CA_FILE, value: /etc/atlasloop/tls/ca.crt}
{{- if $v.tls.mutual }}
- {name: {{ $p }}TLS__CLIENT_CA_FILE, value: /etc/atlasloop/tls/ca.crt}
- {name: {{ $p }}TLS__REQUIRE_CLIENT_CERT, value: "true"}
- {name: {{ $p }}CLIENT_TLS__CERT_FILE, value: /etc/atlasloop/tls/tls.crt}
- {name: {{ $p }}CLIENT_TLS__KEY_FILE, value: /etc/atlasloop/tls/tls.key}
{{- end }}
{{- end }}
{{- if hasPrefix "SASL_" $v.kafka.securityProtocol }}
{{- $sasl := required "kafka.sasl.existingSecret (the user's password) is required with a SASL_* securityProtocol" $v.kafka.sasl.existingSecret }}
- {name: {{ $p }}KAFKA__SASL_MECHANISM, value: {{ $v.kafka.sasl.mechanism | quote }}}
- {name: {{ $p }}KAFKA__SASL_USERNAME, value: {{ required "kafka.sasl.username is required with a SASL_* securityProtocol" $v.kafka.sasl.username | quote }}}
- name: {{ $p }}KAFKA__SASL_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $sasl }}, key: {{ $v.kafka.sasl.passwordKey }}}}
{{- end }}
{{- if $v.kafka.tls.caSecret }}
- {name: {{ $p }}KAFKA__SSL_CA_FILE, value: /etc/atlasloop/kafka-ca/ca.crt}
{{- end }}
{{- if $v.s3.caSecret }}
- {name: {{ $p }}S3__CA_FILE, value: /etc/atlasloop/s3-ca/ca.crt}
{{- end }}
{{- end }}

{{/* Volumes of the files atlasloop.settingsEnv names (ctx: root): the JWKS, certificates and CAs. */}}
{{- define "atlasloop.securityVolumes" -}}
{{- $v := .Values }}
{{- if eq $v.auth.mode "jwt" }}
- name: jwks
  configMap: {name: {{ $v.auth.jwksConfigMap }}}
{{- end }}
{{- if $v.tls.enabled }}
- name: tls
  secret: {secretName: {{ required "tls.secretName (a kubernetes.io/tls Secret with ca.crt) is required when tls.enabled" $v.tls.secretName }}}
{{- end }}
{{- if $v.kafka.tls.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ $v.kafka.tls.caSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- if $v.s3.caSecret }}
- name: s3-ca
  secret: {secretName: {{ $v.s3.caSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- end }}

{{- define "atlasloop.securityMounts" -}}
{{- $v := .Values }}
{{- if eq $v.auth.mode "jwt" }}
- {name: jwks, mountPath: /etc/atlasloop/jwks, readOnly: true}
{{- end }}
{{- if $v.tls.enabled }}
- {name: tls, mountPath: /etc/atlasloop/tls, readOnly: true}
{{- end }}
{{- if $v.kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/atlasloop/kafka-ca, readOnly: true}
{{- end }}
{{- if $v.s3.caSecret }}
- {name: s3-ca, mountPath: /etc/atlasloop/s3-ca, readOnly: true}
{{- end }}
{{- end }}

{{- define "atlasloop.s3Secret" -}}
{{- default (printf "%s-s3" (include "atlasloop.fullname" .)) .Values.s3.existingSecret }}
{{- end }}

{{/* imagePullSecrets of every pod the chart or the operator makes (empty when none are named). */}}
{{- define "atlasloop.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding Ray's auth token (key auth_token): the site's own, or the chart's. */}}
{{- define "atlasloop.rayAuthSecret" -}}
{{- default (printf "%s-ray-auth" (include "atlasloop.fullname" .)) .Values.ray.auth.existingSecret }}
{{- end }}


{{/*
One gRPC service: ServiceAccount, Deployment (restricted, native gRPC probes against the health
service), Service with a named gRPC port, PDB, HPA and NetworkPolicy.
ctx: root, component, extraEnv (list), egress (list of NetworkPolicyEgressRule), extraVolumes and
extraMounts (lists, for files a service's own settings name).
*/}}
{{- define "atlasloop.grpcService" -}}
{{- $root := .root }}
{{- $svc := index $root.Values.services .component }}
{{- $name := printf "%s-%s" (include "atlasloop.fullname" $root) .component }}
{{- $sel := dict "root" $root "component" .component }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  labels:
    {{- include "atlasloop.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "atlasloop.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "atlasloop.selectorLabels" $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "atlasloop.labels" $root | nindent 8 }}
        {{- include "atlasloop.selectorLabels" $sel | nindent 8 }}
      {{- with $root.Values.podDefaults.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: false
      securityContext:
        {{- include "atlasloop.podSecurityContext" $root | nindent 8 }}
      {{- include "atlasloop.pullSecrets" $root | nindent 6 }}
      {{- with $root.Values.podDefaults.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.podDefaults.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.podDefaults.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "atlasloop.image" $sel }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: grpc
              containerPort: {{ $svc.port }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $root.Values.metrics.port }}
              protocol: TCP
            - name: probe
              containerPort: {{ $root.Values.probes.port }}
              protocol: TCP
          env:
            {{- include "atlasloop.settingsEnv" (dict "root" $root "component" .component "port" $svc.port) | nindent 12 }}
            {{- with .extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          # Probes use a port and threads of their own: a flooded work pool never fails them.
          readinessProbe:
            grpc: {port: {{ $root.Values.probes.port }}, service: ""}
            periodSeconds: 5
            failureThreshold: 3
          livenessProbe:
            grpc: {port: {{ $root.Values.probes.port }}, service: atlasloop.liveness}
            initialDelaySeconds: 10
            periodSeconds: 10
            failureThreshold: 6
          startupProbe:
            grpc: {port: {{ $root.Values.probes.port }}, service: atlasloop.liveness}
            periodSeconds: 5
            failureThreshold: 60
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "atlasloop.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- include "atlasloop.securityMounts" $root | nindent 12 }}
            {{- with .extraMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {sizeLimit: 8Gi}
        {{- include "atlasloop.securityVolumes" $root | nindent 8 }}
        {{- with .extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "atlasloop.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    atlasloop.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "atlasloop.selectorLabels" $sel | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $svc.port }}
      targetPort: grpc
      appProtocol: grpc
    - name: metrics
      port: {{ $root.Values.metrics.port }}
      targetPort: metrics
{{- if $svc.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "atlasloop.labels" $root | nindent 4 }}
spec:
  minAvailable: {{ $svc.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "atlasloop.selectorLabels" $sel | nindent 6 }}
{{- end }}
{{- if $svc.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "atlasloop.labels" $root | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ $svc.autoscaling.targetCPUUtilizationPercentage }}}
{{- end }}
{{- if $root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "atlasloop.labels" $root | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "atlasloop.selectorLabels" $sel | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector: {matchLabels: {app.kubernetes.io/part-of: atlasloop, app.kubernetes.io/instance: {{ $root.Release.Name }}}}
        {{- range $root.Values.networkPolicy.clientNamespaces }}
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: {{ . }}}}
        {{- end }}
      ports:
        - {port: grpc, protocol: TCP}
    - from:
        {{- range $root.Values.metrics.scraperNamespaces }}
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: {{ . }}}}
        {{- end }}
      ports:
        - {port: metrics, protocol: TCP}
  egress:
    - ports:
        - {port: 53, protocol: UDP}
        - {port: 53, protocol: TCP}
    {{- with .egress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end }}

{{/* The pods of one of the release's Ray clusters (ctx: root, component), by labels the chart sets. */}}
{{- define "atlasloop.rayPods" -}}
matchLabels:
  app.kubernetes.io/instance: {{ .root.Release.Name }}
  atlasloop.io/ray-cluster: {{ .component }}
{{- end }}

{{/* The pods of one of the release's services (ctx: root, component). */}}
{{- define "atlasloop.servicePods" -}}
matchLabels:
  app.kubernetes.io/instance: {{ .root.Release.Name }}
  app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Egress rule to one dependency (ctx: peers, port). */}}
{{- define "atlasloop.egressTo" -}}
- to:
    {{- toYaml .peers | nindent 4 }}
  ports:
    - {port: {{ .port }}, protocol: TCP}
{{- end }}
