#!/usr/bin/env bash
# The one-command demo, on a fresh machine, on real pods: the images built here, a
# local one-node Kubernetes cluster, `helm install` of the operator (it runs as a
# pod), `kubectl apply` of the example CommerceWebhook, its webhook pod made Ready
# by the kubelet's probes, Commerce's calls answered through the Service, and the
# config to paste into Commerce. Everything it starts is stopped on exit or Ctrl-C.
# Each step says when it started (seconds since the demo's start): where a run's time
# goes (docs/design/demo-time.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export CWO_CLUSTER_NAME=demo-$$
rust_build=
rust_log=$(mktemp)
cleanup() {
  [ -n "$rust_build" ] && kill -- "-$rust_build" 2>/dev/null || true
  bash scripts/local-cluster.sh down >/dev/null 2>&1 || true
  rm -f "$rust_log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
started=$SECONDS
step() {
  if [ -t 1 ]; then printf '\n\033[1m== [%3d s] %s\033[0m\n' "$((SECONDS - started))" "$*"; else printf '\n== [%3d s] %s\n' "$((SECONDS - started))" "$*"; fi
}

# The Rust release build needs nothing from the cluster: on a first run it goes on
# while the cluster's packages download and its Kubernetes binaries build (phases
# that leave a core idle), and on a cached run it only checks that nothing changed.
# Its own process group, so that an interrupted demo stops cargo and rustc too.
setsid bash scripts/release-build.sh -p commerce-webhook -p commerce-webhook-operator --bins >"$rust_log" 2>&1 &
rust_build=$!

step "Starting a local one-node Kubernetes cluster (first time: builds it)"
bash scripts/local-cluster.sh up >/dev/null
eval "$(bash scripts/local-cluster.sh env)"
kubectl get nodes -o wide

step "Building the webhook and operator images into the node's engine"
wait "$rust_build" || { cat "$rust_log" >&2; echo "demo: the release build failed" >&2; exit 1; }
rust_build=
bash scripts/build-images.sh

step "helm install commerce-webhook-operator (images: $(bash scripts/build-images.sh --helm-set))"
helm install cwo charts/commerce-webhook-operator --namespace commerce-system --create-namespace \
  --set "$(bash scripts/build-images.sh --helm-set)" --wait --timeout 3m
kubectl get pods -n commerce-system

step "kubectl apply -f examples/check-stock.yaml"
kubectl create namespace shop >/dev/null
kubectl apply -n shop -f examples/check-stock.yaml
kubectl wait -n shop --for=condition=Ready cwh/check-stock --timeout=180s
kubectl get cwh,deployment,pods,service,endpoints -n shop

step "Commerce's calls, through the Service"
address=$(kubectl get service check-stock -n shop -o jsonpath='{.spec.clusterIP}:{.spec.ports[0].port}')
path=$(kubectl get cwh check-stock -n shop -o jsonpath='{.spec.path}')
ask() {
  echo "\$ curl -d '$1' http://$address$path"
  curl -s --max-time 2 -H 'Content-Type: application/json' -d "$1" "http://$address$path"
  echo
}
# The starter kit's shape, then what the hook printed below makes Commerce send for
# an add-to-cart (only the selected fields).
ask '{"data":{"cart_id":"42","items":[{"item_id":1,"sku":"MS-01","qty":2}]}}'
ask '{"data":{"cart_id":"42","items":[{"item_id":1,"sku":"MS-02","qty":"3"},{"item_id":2,"sku":"MS-03","qty":1}]}}'
ask '{"product":{"sku":"MS-02","type_id":"simple"},"info":{"qty":"3"}}'

step "What to paste into Commerce"
"$(bash scripts/release-build.sh --print-dir)/commerce-webhook-operator" commerce-config check-stock --namespace shop

step "Done in $((SECONDS - started)) s: everything started here is stopped now"
