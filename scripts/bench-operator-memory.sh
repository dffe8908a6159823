#!/usr/bin/env bash
# Operator memory with many Secrets in the cluster: a control plane without a node
# (it can run beside a cluster that has one), N Secrets of KB kilobytes each, and the
# operator (release build, cluster-wide, as the chart installs it) started against
# them. Prints its peak RSS (VmHWM) once it has listed and watched them for a while.
#
#   scripts/bench-operator-memory.sh [N] [KB]      (default 2000 50)
#   OPERATOR_BIN=/path/to/commerce-webhook-operator scripts/bench-operator-memory.sh
#                                                  measure another build (an older one)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000} kb=${2:-50}
export CWO_CLUSTER_NAME=${CWO_CLUSTER_NAME:-mem} CWO_NODE=0
work=$(mktemp -d)
operator=
cleanup() {
  [ -n "$operator" ] && kill "$operator" 2>/dev/null || true
  bash scripts/local-cluster.sh down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ -z "${OPERATOR_BIN:-}" ]; then
  bash scripts/release-build.sh -p commerce-webhook-operator --bins
  OPERATOR_BIN=$(bash scripts/release-build.sh --print-dir)/commerce-webhook-operator
fi
bash scripts/local-cluster.sh up >/dev/null
eval "$(bash scripts/local-cluster.sh env)"
kubectl apply -f crds/commercewebhook.yaml >/dev/null
kubectl create namespace bench-secrets >/dev/null

# N Secrets of random data, applied a hundred at a time.
python3 - "$count" "$kb" "$work" <<'PY'
import base64, json, os, sys
count, kb, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for start in range(0, count, 100):
    items = [{"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": f"bulk-{i}", "namespace": "bench-secrets"},
              "data": {"blob": base64.b64encode(os.urandom(kb * 1024)).decode()}}
             for i in range(start, min(start + 100, count))]
    with open(f"{work}/secrets-{start:06}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
PY
for file in "$work"/secrets-*.json; do kubectl create -f "$file" >/dev/null; done
echo "bench-operator-memory: $count Secrets of $kb KB created" >&2

RUST_LOG= LOG_LEVEL=info "$OPERATOR_BIN" run --metrics-address 127.0.0.1:0 \
  --webhook-image bench:0 2>"$work/operator.log" &
operator=$!
# Listing and watching them settles within seconds; sample for 30 s.
peak=0
for _ in $(seq 60); do
  sleep 0.5
  kill -0 "$operator" 2>/dev/null || { cat "$work/operator.log" >&2; exit 1; }
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$operator/status")
done
awk -v kb="$peak" -v n="$count" -v size="$kb" \
  'BEGIN { printf "operator peak RSS with %d Secrets of %d KB: %.1f MiB\n", n, size, kb / 1024 }'
