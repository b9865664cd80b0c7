{{/*
A Ray cluster spec (KubeRay headGroupSpec + one GPU workerGroupSpec), shared by the inference
RayService and the training RayCluster. ctx: root, component, workers (values), cluster (name),
extraEnv (optional: more environment for every Ray container).
GPUs are requested by the workers only; heads and service pods never ask for one.
*/}}
{{- define "atlasloop.rayClusterSpec" -}}
{{- $root := .root }}
{{- $sel := dict "root" $root "component" .component }}
rayVersion: {{ $root.Values.ray.version | quote }}
enableInTreeAutoscaling: true
headGroupSpec:
  rayStartParams:
    dashboard-host: "0.0.0.0"
    num-gpus: "0"
  template:
    metadata:
      labels:
        {{- include "atlasloop.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}-ray-head
    spec:
      securityContext:
        {{- include "atlasloop.podSecurityContext" $root | nindent 8 }}
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
          resources:
            {{- toYaml $root.Values.ray.head.resources | nindent 12 }}
          securityContext:
            {{- include "atlasloop.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: shm, mountPath: /dev/shm}
      volumes:
        - {name: tmp, emptyDir: {sizeLimit: 20Gi}}
        - {name: shm, emptyDir: {medium: Memory, sizeLimit: 4Gi}}
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
      spec:
        securityContext:
          {{- include "atlasloop.podSecurityContext" $root | nindent 10 }}
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
            image: {{ include "atlasloop.image" $sel }}{{ if gt (int .workers.gpusPerWorker) 0 }}-cuda{{ end }}
            imagePullPolicy: {{ $root.Values.image.pullPolicy }}
            env:
              {{- include "atlasloop.settingsEnv" (dict "root" $root "component" .component "port" (index $root.Values.services .component).port) | nindent 14 }}
              {{- with .extraEnv }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
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
        volumes:
          - {name: tmp, emptyDir: {sizeLimit: 50Gi}}
          - {name: shm, emptyDir: {medium: Memory, sizeLimit: 16Gi}}
{{- end }}
