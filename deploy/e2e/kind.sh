#!/usr/bin/env bash
# End to end on a kind cluster, for CI that can reach the internet (it pulls operators, charts and
# images; AtlasLoop's own CI machines cannot, so this is NOT run by `make test`): cert-manager,
# KubeRay, CloudNativePG with the Barman Cloud plugin, Strimzi, SeaweedFS, the chart with TLS, SASL
# and private CAs as deploy/values/production.yaml has them, then one prediction of the real CT and
# one training run. Needs docker, kind, kubectl, helm, yq (mikefarah) and python3.
#
#   deploy/e2e/kind.sh            # creates the cluster `atlasloop-e2e`, runs, leaves it up
#   KEEP=0 deploy/e2e/kind.sh     # deletes the cluster at the end
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=${CLUSTER:-atlasloop-e2e}
NS=atlasloop
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-1}" = 0 ]; then kind delete cluster --name "$CLUSTER"; fi
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
forward() {  # namespace service local:remote; waits until the local port answers
  kubectl -n "$1" port-forward "svc/$2" "$3" >"$WORK/forward-$2.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 60); do nc -z 127.0.0.1 "${3%%:*}" 2>/dev/null && return 0; sleep 1; done
  echo "port-forward to $2 did not come up"; cat "$WORK/forward-$2.log"; return 1
}

say "kind cluster and the AtlasLoop images"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
make venv proto
make images REGISTRY=atlasloop TAG=e2e
for s in storage inference scoring rendering tracking training; do
  kind load docker-image --name "$CLUSTER" "atlasloop/$s:e2e"
done
for ns in $NS kafka postgres seaweedfs; do kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -; done
kubectl label namespace $NS pod-security.kubernetes.io/enforce=restricted --overwrite

say "cert-manager and one CA for gRPC and S3"
helm repo add jetstack https://charts.jetstack.io >/dev/null
helm upgrade --install cert-manager jetstack/cert-manager -n cert-manager --create-namespace \
  --set crds.enabled=true --wait
kubectl apply -f - <<'EOF'
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: atlasloop-ca, namespace: cert-manager}
spec: {isCA: true, commonName: AtlasLoop e2e CA, secretName: atlasloop-ca, issuerRef: {name: selfsigned, kind: ClusterIssuer}}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: atlasloop-ca}
spec: {ca: {secretName: atlasloop-ca}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: atlasloop-grpc-tls, namespace: atlasloop}
spec:
  secretName: atlasloop-grpc-tls
  issuerRef: {name: atlasloop-ca, kind: ClusterIssuer}
  usages: [server auth, client auth]
  dnsNames: [localhost, atlasloop-storage, atlasloop-inference, atlasloop-scoring, atlasloop-rendering,
             atlasloop-tracking, atlasloop-training, atlasloop-storage.atlasloop.svc, atlasloop-inference.atlasloop.svc,
             atlasloop-scoring.atlasloop.svc, atlasloop-rendering.atlasloop.svc, atlasloop-tracking.atlasloop.svc,
             atlasloop-training.atlasloop.svc]
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: seaweedfs-s3-tls, namespace: seaweedfs}
spec:
  secretName: seaweedfs-s3-tls
  issuerRef: {name: atlasloop-ca, kind: ClusterIssuer}
  dnsNames: [localhost, seaweedfs-s3, seaweedfs-s3.seaweedfs.svc, seaweedfs-s3.seaweedfs.svc.cluster.local]
EOF
kubectl -n $NS wait certificate/atlasloop-grpc-tls --for=condition=Ready --timeout=120s
kubectl -n seaweedfs wait certificate/seaweedfs-s3-tls --for=condition=Ready --timeout=120s
kubectl -n cert-manager get secret atlasloop-ca -o jsonpath='{.data.ca\.crt}' | base64 -d >"$WORK/ca.crt"
for ns in $NS postgres; do
  kubectl -n "$ns" create secret generic atlasloop-s3-ca --from-file=ca.crt="$WORK/ca.crt" --dry-run=client -o yaml | kubectl apply -f -
done

say "SeaweedFS (S3 over HTTPS, two identities)"
ACCESS=atlasloop SECRET=$(openssl rand -hex 24)
cat >"$WORK/s3-identities.json" <<EOF
{"identities": [{"name": "atlasloop", "credentials": [{"accessKey": "$ACCESS", "secretKey": "$SECRET"}],
                 "actions": ["Read", "Write", "List", "Tagging", "Admin"]}]}
EOF
kubectl -n seaweedfs create secret generic seaweedfs-s3-config --from-file=seaweedfs_s3_config="$WORK/s3-identities.json" \
  --dry-run=client -o yaml | kubectl apply -f -
yq '.master.replicas = 1 | .master.data.size = "1Gi" | .volume.replicas = 1 | .volume.dataDirs[0].size = "10Gi"
    | .filer.replicas = 1 | .s3.replicas = 1' deploy/prerequisites/seaweedfs-values.yaml >"$WORK/seaweedfs.yaml"
helm repo add seaweedfs https://seaweedfs.github.io/seaweedfs/helm >/dev/null
helm upgrade --install seaweedfs seaweedfs/seaweedfs -n seaweedfs -f "$WORK/seaweedfs.yaml" --wait --timeout 10m
kubectl -n $NS create secret generic atlasloop-s3 --from-literal=accessKey=$ACCESS --from-literal=secretKey="$SECRET" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n postgres create secret generic atlasloop-postgres-backups-s3 --from-literal=accessKey=$ACCESS \
  --from-literal=secretKey="$SECRET" --dry-run=client -o yaml | kubectl apply -f -

say "Strimzi (TLS listener, SCRAM user, AtlasLoop's topics)"
helm repo add strimzi https://strimzi.io/charts/ >/dev/null
helm upgrade --install strimzi strimzi/strimzi-kafka-operator -n kafka --wait
yq 'select(.kind == "KafkaNodePool").spec.replicas = 1 | select(.kind == "KafkaNodePool").spec.storage.size = "5Gi"
    | select(.kind == "Kafka").spec.kafka.config."default.replication.factor" = 1
    | select(.kind == "Kafka").spec.kafka.config."min.insync.replicas" = 1
    | select(.kind == "Kafka").spec.kafka.config."offsets.topic.replication.factor" = 1
    | select(.kind == "Kafka").spec.kafka.config."transaction.state.log.replication.factor" = 1
    | select(.kind == "KafkaTopic").spec.replicas = 1' deploy/prerequisites/strimzi-kafka.yaml | kubectl apply -f -
kubectl -n kafka wait kafka/atlasloop --for=condition=Ready --timeout=15m
kubectl -n kafka wait kafkauser/atlasloop --for=condition=Ready --timeout=5m
for secret in atlasloop atlasloop-cluster-ca-cert; do
  kubectl -n kafka get secret "$secret" -o json | yq -p json -o yaml '{"apiVersion": "v1", "kind": "Secret", "type": .type,
    "metadata": {"name": .metadata.name, "namespace": "atlasloop"}, "data": .data}' | kubectl apply -f -
done

say "CloudNativePG with the Barman Cloud plugin"
helm repo add cnpg https://cloudnative-pg.github.io/charts >/dev/null
helm upgrade --install cnpg cnpg/cloudnative-pg -n postgres --wait
kubectl apply -n postgres -f https://github.com/cloudnative-pg/plugin-barman-cloud/releases/latest/download/manifest.yaml
kubectl -n postgres rollout status deployment/barman-cloud --timeout=5m
yq 'select(.kind == "Cluster").spec.instances = 1 | select(.kind == "Cluster").spec.storage.size = "5Gi"' \
  deploy/prerequisites/cloudnative-pg-cluster.yaml | kubectl apply -f -
kubectl -n postgres wait cluster/atlasloop-postgres --for=condition=Ready --timeout=10m
PGURI=$(kubectl -n postgres get secret atlasloop-postgres-app -o jsonpath='{.data.uri}' | base64 -d)
kubectl -n $NS create secret generic atlasloop-postgres-app --from-literal=uri="${PGURI/postgresql:/postgresql+psycopg:}" \
  --dry-run=client -o yaml | kubectl apply -f -

say "KubeRay and the chart"
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ >/dev/null
helm upgrade --install kuberay-operator kuberay/kuberay-operator -n $NS -f deploy/prerequisites/kuberay-operator-values.yaml --wait
TOKENS='{"e2e-admin": "ops:admin", "e2e-inference": "inference:service", "e2e-tracking": "tracking:service",
         "e2e-training": "training:service", "e2e-annotator": "annie:annotator", "e2e-reviewer": "rita:reviewer"}'
kubectl -n $NS create secret generic atlasloop-dev-tokens --from-literal=devTokens="$TOKENS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n $NS create secret generic atlasloop-service-token --from-literal=inference=e2e-inference \
  --from-literal=tracking=e2e-tracking --from-literal=training=e2e-training --from-literal=grantKey="$(openssl rand -hex 32)" \
  --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install atlasloop charts/atlasloop -n $NS -f deploy/e2e/kind-values.yaml --wait --timeout 15m \
  --set 'networkPolicy.kubeApiServer.peers[0].ipBlock.cidr=0.0.0.0/0'

say "the first model set (the tiny bootstrap networks), over HTTPS to S3"
forward seaweedfs seaweedfs-s3 18443:8443
export ATLASLOOP_S3__ENDPOINT=localhost:18443 ATLASLOOP_S3__SECURE=true ATLASLOOP_S3__CA_FILE="$WORK/ca.crt" \
  ATLASLOOP_S3__ACCESS_KEY=$ACCESS ATLASLOOP_S3__SECRET_KEY="$SECRET" ATLASLOOP_S3__BUCKET=atlasloop
.venv/bin/python - <<'EOF'
from atlasloop.cli.models_command import CliS3
from atlasloop.common.objectstore import ObjectStore
from atlasloop.models.bootstrap import bootstrap_set
from atlasloop.models.registry import ModelRegistry

print("current model set:", bootstrap_set(ModelRegistry(ObjectStore(CliS3().s3)), spacing_mm=3.0))
EOF

say "one prediction of the real CT, over mutual TLS"
kubectl -n $NS get secret atlasloop-grpc-tls -o jsonpath='{.data.tls\.crt}' | base64 -d >"$WORK/client.crt"
kubectl -n $NS get secret atlasloop-grpc-tls -o jsonpath='{.data.tls\.key}' | base64 -d >"$WORK/client.key"
export ATLASLOOP_TLS_CA="$WORK/ca.crt" ATLASLOOP_TLS_CERT="$WORK/client.crt" ATLASLOOP_TLS_KEY="$WORK/client.key"
export ATLASLOOP_TOKEN=e2e-admin
port=15051
for s in storage inference scoring rendering tracking training; do
  forward $NS "atlasloop-$s" "$port:$(kubectl -n $NS get svc "atlasloop-$s" -o jsonpath='{.spec.ports[0].port}')"
  export "ATLASLOOP_${s^^}_TARGET=localhost:$port"
  port=$((port + 1))
done
kubectl -n $NS wait pod -l app.kubernetes.io/component=inference --for=condition=Ready --timeout=15m
.venv/bin/atlasloop status
# an AbdomenAtlas case folder: the CT and its labels (TotalSegmentator's ids mapped onto ours)
.venv/bin/python - "$WORK/cases/e2e-ct" <<'EOF'
import shutil
import sys
from pathlib import Path

from atlasloop.imaging.labels import from_totalsegmentator
from atlasloop.imaging.volume import Volume, load_nifti, save_nifti

case = Path(sys.argv[1])
case.mkdir(parents=True)
shutil.copy("tests/data/real-ct/example_ct_sm.nii.gz", case / "ct.nii.gz")
seg = load_nifti(Path("tests/data/real-ct/example_seg.nii.gz"))
save_nifti(Volume(from_totalsegmentator(seg.array), seg.affine), case / "combined_labels.nii.gz")
EOF
.venv/bin/atlasloop import "$WORK/cases"
for _ in $(seq 120); do
  if .venv/bin/atlasloop cases --json --state predicted --state scored --state queued | grep -q e2e-ct; then break; fi
  sleep 10
done
.venv/bin/atlasloop cases --json --state predicted --state scored --state queued | grep -q e2e-ct

say "one training run"
.venv/bin/atlasloop train --reason e2e --from-originals --epochs 1 --watch
.venv/bin/atlasloop runs
say "end to end: passed"
