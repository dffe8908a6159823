#!/usr/bin/env bash
# The project's one test command: builds the images the pods run, brings up the
# local one-node Kubernetes cluster (building it the first time), runs every test of
# the workspace against it, and takes the cluster down again, also when tests fail.
#
#   scripts/test.sh                 all tests
#   scripts/test.sh -p e2e          extra arguments go to `cargo test`
#   scripts/test.sh -p e2e -- chart filters and flags after `--` go to the test binaries
#
# Plain `cargo test` needs no cluster: it runs the unit and loopback tests and skips
# the tests marked `#[ignore = "needs a cluster: scripts/test.sh"]` (and
# `"needs helm: ..."`), which this script runs with `--include-ignored`.
#
# With USE_EXISTING_CLUSTER=1 and KUBECONFIG set, the e2e tests use that cluster; its
# nodes must be able to run the images scripts/build-images.sh tags by default
# (cwo.local/commerce-webhook and cwo.local/operator: load them into the nodes).
set -euo pipefail
cd "$(dirname "$0")/.."

export CWO_CLUSTER_NAME=${CWO_CLUSTER_NAME:-test-$$}
cluster=scripts/local-cluster.sh
cleanup() { bash "$cluster" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# The cluster first: its `up` starts the Docker engine (and `down` stops it), which
# the images are then built into.
bash "$cluster" up >/dev/null
# The tests name the images build-images.sh tags by default (e2e::WEBHOOK_IMAGE,
# cwo.local/*): a registry or tag exported for a push of one's own must not rename them.
[ "${USE_EXISTING_CLUSTER:-}" = 1 ] || env -u IMAGE_REGISTRY -u IMAGE_TAG bash scripts/build-images.sh
eval "$(bash "$cluster" env)"
echo "test.sh: cluster ready ($(bash "$cluster" status | head -n 1))"

# The chart tests need helm and kubectl on PATH; `env` put them there.
cargo build --workspace --bins
# Cargo's arguments, then `--`, then the test binaries' (this script adds
# --include-ignored to those, after any the caller gave behind their own `--`).
cargo_args=() test_args=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; test_args=("$@"); break; fi
  cargo_args+=("$1"); shift
done
status=0
cargo test --workspace --no-fail-fast "${cargo_args[@]}" -- --include-ignored "${test_args[@]}" || status=$?
# A failure on a machine nobody can log in to (CI) must still say what the node did.
[ "$status" -eq 0 ] || bash "$cluster" diagnose >&2 || true
exit "$status"
