#!/usr/bin/env bash
# The one-command demo, on a fresh machine: a local Kubernetes control plane, the
# Helm chart, the operator (running here with the chart's ServiceAccount token),
# the example CommerceWebhook reconciled, then the webhook binary answering real
# Commerce requests with the same inputs, and the config to paste into Commerce.
# Everything it starts is stopped on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export CWO_CLUSTER_NAME=demo-$$
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  bash scripts/local-cluster.sh down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building (first time: a few minutes)"
cargo build -q --workspace --bins
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

step "Starting a local Kubernetes control plane (first time: builds it, ~5-10 minutes)"
bash scripts/local-cluster.sh up >/dev/null
eval "$(bash scripts/local-cluster.sh env)"
kubectl version 2>/dev/null | grep Server

step "helm install commerce-webhook-operator"
helm install cwo charts/commerce-webhook-operator --namespace commerce-system --create-namespace
kubectl get crd commercewebhooks.integration.commerce.dev

step "Running the operator with the chart's ServiceAccount (no kubelet here to run its pod)"
account=cwo-commerce-webhook-operator
token=""
for _ in $(seq 1 100); do
  secret=$(kubectl get serviceaccount "$account" -n commerce-system -o jsonpath='{.secrets[0].name}' 2>/dev/null || true)
  [ -n "$secret" ] && token=$(kubectl get secret "$secret" -n commerce-system -o jsonpath='{.data.token}' 2>/dev/null | base64 -d || true)
  [ -n "$token" ] && break
  sleep 0.2
done
[ -n "$token" ] || { echo "no token for ServiceAccount $account" >&2; exit 1; }
kubectl config view --raw > "$work/operator.kubeconfig"
KUBECONFIG="$work/operator.kubeconfig" kubectl config set-credentials operator --token="$token" >/dev/null
KUBECONFIG="$work/operator.kubeconfig" kubectl config set-context --current --user=operator >/dev/null
KUBECONFIG="$work/operator.kubeconfig" LOG_LEVEL=info "$target/commerce-webhook-operator" run \
  --metrics-address 127.0.0.1:0 2>"$work/operator.log" &
pids+=($!)
echo "operator running (log: $work/operator.log)"

step "kubectl apply -f examples/check-stock.yaml"
kubectl create namespace shop >/dev/null
kubectl apply -n shop -f examples/check-stock.yaml
url=""
for _ in $(seq 1 150); do
  url=$(kubectl get cwh check-stock -n shop -o jsonpath='{.status.url}' 2>/dev/null || true)
  [ -n "$url" ] && break
  sleep 0.2
done
[ -n "$url" ] || { echo "the operator did not report a URL; its log:" >&2; tail -20 "$work/operator.log" >&2; exit 1; }
kubectl get cwh,deployment,service -n shop

step "Playing the kubelet: marking the webhook's pod Ready"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for _ in $(seq 1 50); do
  pods=$(kubectl get pods -n shop -l app.kubernetes.io/instance=check-stock -o name)
  [ -n "$pods" ] && break
  sleep 0.2
done
for pod in $pods; do
  kubectl patch "$pod" -n shop --subresource=status --type=merge -p \
    "{\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"lastTransitionTime\":\"$now\"},{\"type\":\"ContainersReady\",\"status\":\"True\",\"lastTransitionTime\":\"$now\"}]}}" >/dev/null
done
for _ in $(seq 1 100); do
  ready=$(kubectl get cwh check-stock -n shop -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
  [ "$ready" = True ] && break
  sleep 0.2
done
kubectl get cwh -n shop

step "Running the webhook binary with the Deployment's inputs"
kubectl get configmap check-stock-inventory -n shop -o jsonpath='{.data.inventory\.yaml}' > "$work/inventory.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The literal env of the webhook container, with the mounted inventory path made local.
env_args=$(kubectl get deployment check-stock -n shop -o json | python3 -c '
import json, shlex, sys
container = json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]
print(" ".join(shlex.quote(var["name"] + "=" + var["value"]) for var in container.get("env", [])
               if "value" in var and var["name"] not in ("PORT", "INVENTORY_FILE", "LOG_FORMAT", "SHUTDOWN_DRAIN_MS")))
')
# exec: the background job is the webhook itself, so the cleanup stops it.
(eval "exec env $env_args PORT=$port BIND_ADDRESS=127.0.0.1 LOG_FORMAT=text SHUTDOWN_DRAIN_MS=0 INVENTORY_FILE=$work/inventory.yaml \"$target/commerce-webhook\"") 2>"$work/webhook.log" &
pids+=($!)
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || { echo "the webhook did not start:" >&2; cat "$work/webhook.log" >&2; exit 1; }
echo "webhook listening on 127.0.0.1:$port with: $env_args"
path=$(kubectl get cwh check-stock -n shop -o jsonpath='{.spec.path}')
ask() {
  echo "\$ curl -d '$1' http://127.0.0.1:$port$path"
  curl -s -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$port$path"
  echo
}
ask '{"data":{"cart_id":"42","items":[{"item_id":1,"sku":"MS-01","qty":2}]}}'
ask '{"data":{"cart_id":"42","items":[{"item_id":1,"sku":"MS-02","qty":"3"},{"item_id":2,"sku":"MS-03","qty":1}]}}'

step "What to paste into Commerce"
"$target/commerce-webhook-operator" commerce-config check-stock --namespace shop

step "Done: everything started here is stopped now"
