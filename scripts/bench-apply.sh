#!/usr/bin/env bash
# Time from `kubectl apply` of the example CommerceWebhook to the first correct
# Commerce answer through its Service, on the local node with the images present
# and the operator installed by Helm. Runs N times (default 5) in fresh namespaces
# and prints each run and the median.
#
#   scripts/bench-apply.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
export CWO_CLUSTER_NAME=bench-apply-$$
trap 'bash scripts/local-cluster.sh down >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM HUP
bash scripts/local-cluster.sh up >/dev/null
bash scripts/build-images.sh >/dev/null
eval "$(bash scripts/local-cluster.sh env)"
helm install cwo charts/commerce-webhook-operator --namespace commerce-system --create-namespace \
  --set "$(bash scripts/build-images.sh --helm-set)" --wait --timeout 3m >/dev/null

cart='{"data":{"cart_id":"42","items":[{"item_id":1,"sku":"MS-01","qty":2}]}}'
times=()
for run in $(seq 1 "$runs"); do
  ns=bench-$run
  kubectl create namespace "$ns" >/dev/null
  start=$(date +%s%N)
  kubectl apply -n "$ns" -f examples/check-stock.yaml >/dev/null
  answer=
  until [ "$answer" = '{"op":"success"}' ]; do
    address=$(kubectl get service check-stock -n "$ns" -o jsonpath='{.spec.clusterIP}:{.spec.ports[0].port}' 2>/dev/null || true)
    if [ -n "$address" ] && [ "$address" != ":" ]; then
      answer=$(curl -s --max-time 1 -H 'Content-Type: application/json' -d "$cart" "http://$address/webhook/check-stock" || true)
    fi
    [ $(( ($(date +%s%N) - start) / 1000000000 )) -lt 180 ] || { echo "run $run: no answer after 180 s" >&2; exit 1; }
    [ "$answer" = '{"op":"success"}' ] || sleep 0.05
  done
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  times+=("$ms")
  echo "run $run: apply -> first success through the Service: $ms ms"
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median of $runs: $median ms"
