#!/usr/bin/env bash
# Operator benchmark: a fresh local control plane, N CommerceWebhooks through the
# operator (a separate process, for its RSS) against a direct client doing the same
# Deployment/Service writes, in the same run.
#
#   scripts/bench-operator.sh [N] [--steady SECONDS] [--no-direct]     (default N: 1000)
#     --steady S    after converging, S seconds with nothing changing, and the API
#                   requests the API server served meanwhile (its apiserver_request_total)
#     --no-direct   skip the direct client (for a scale run: the ratio is the burst's)
#
#   scripts/bench-operator.sh 1000                     the burst against the direct client
#   scripts/bench-operator.sh 10000 --steady 300 --no-direct    the scale run
#
# With CWO_AUDIT=1 the API server also writes an audit log, and each phase (both
# bursts, the steady state) lists its requests by client, verb and resource: which
# client sent what (its cost to the API server inflates both bursts alike).
set -euo pipefail
cd "$(dirname "$0")/.."
export CWO_CLUSTER_NAME=bench-$$
# A thousand resources, no pods: the control plane alone (no node) is measured.
export CWO_NODE=0
trap 'bash scripts/local-cluster.sh down >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM HUP
bash scripts/release-build.sh -p commerce-webhook-operator -p e2e --bins
bash scripts/local-cluster.sh up >/dev/null
eval "$(bash scripts/local-cluster.sh env)"
target=$(bash scripts/release-build.sh --print-dir)
"$target/bench-operator" "${@:-1000}"
