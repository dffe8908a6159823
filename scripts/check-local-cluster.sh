#!/usr/bin/env bash
# Checks what docs/security/local-cluster.md promises of scripts/local-cluster.sh, on
# a control-plane-only cluster of its own (CWO_NODE=0, so it runs beside any other):
#   1. a run directory someone else prepared (another owner, group/other access, a
#      symlink) is refused before anything starts;
#   2. the state is private: the run and state directories 0700, keys, the admin
#      token, the kubeconfig and the pid files 0600;
#   3. etcd refuses a plain-http client and a TLS client without a certificate of its
#      CA, and answers the apiserver's certificate (so the refusals are not an etcd
#      that is simply down);
#   4. `down` kills no process its pid files do not name exactly (a planted or stale
#      pid survives), and stops the cluster's own;
#   5. the cached kubectl and helm have the pinned SHA-256.
# Needs root (as the cluster does) and the cached binaries (`local-cluster.sh tools`).
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=scripts/local-cluster.sh
say() { printf 'check-local-cluster: %s\n' "$*"; }
fail() { printf 'check-local-cluster: FAIL: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (the check hands a directory to another uid)"

work=$(mktemp -d)
decoy=
cleanup() {
  CWO_RUN_DIR=$work/run CWO_CLUSTER_NAME=check bash "$cluster" down >/dev/null 2>&1 || true
  [ -n "$decoy" ] && kill "$decoy" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Prepared run directories.
refused() {
  local what=$1 expected=$2 out
  if out=$(CWO_RUN_DIR=$3 CWO_CLUSTER_NAME=check CWO_NODE=0 bash "$cluster" up 2>&1); then
    fail "up accepted $what"
  fi
  grep -q "$expected" <<<"$out" || fail "up refused $what without saying '$expected': $out"
  say "ok: up refuses $what"
}
mkdir -m 0700 "$work/foreign" && chown 65534 "$work/foreign"
refused "a run directory owned by another user" "belongs to uid 65534" "$work/foreign"
mkdir -m 0755 "$work/open"
refused "a run directory others can read" "has mode 755" "$work/open"
mkdir -m 0700 "$work/target" && ln -s "$work/target" "$work/link"
refused "a symlink as run directory" "is a symlink" "$work/link"
mkdir -m 0777 "$work/shared"
refused "a run directory inside a non-sticky world-writable one" "writable by others and not sticky" "$work/shared/run"

# 2. A control plane, in a fresh run directory.
export CWO_RUN_DIR=$work/run CWO_CLUSTER_NAME=check CWO_NODE=0
bash "$cluster" up >/dev/null
state=$CWO_RUN_DIR/cluster-check
for dir in "$CWO_RUN_DIR" "$state"; do
  [ "$(stat -c %a "$dir")" = 700 ] || fail "$dir has mode $(stat -c %a "$dir"), not 700"
done
for file in "$state"/pki/*.key "$state/tokens.csv" "$state/kubeconfig" "$state"/pids/*; do
  [ "$(stat -c %a "$file")" = 600 ] || fail "$file has mode $(stat -c %a "$file"), not 600"
done
say "ok: run and state directories 0700; keys, token, kubeconfig, pid files 0600"

# 3. etcd.
endpoint=$(cat "$state/etcd-endpoint")
port=${endpoint##*:}
range='{"key":"L3JlZ2lzdHJ5","range_end":"L3JlZ2lzdHJ6","count_only":true}'
put='{"key":"L3JlZ2lzdHJ5L2NoZWNrLWxvY2FsLWNsdXN0ZXI=","value":"cGxhbnRlZA=="}'
plain=$(curl -s --max-time 5 "http://127.0.0.1:$port/v3/kv/put" -d "$put" || true)
[[ "$plain" != *'"header"'* ]] || fail "etcd took a plain-http write: $plain"
if curl -s --max-time 5 --cacert "$state/pki/etcd-ca.crt" "https://127.0.0.1:$port/v3/kv/range" -d "$range" >/dev/null 2>&1; then
  fail "etcd answered a TLS client without a certificate"
fi
admin=$(curl -s --max-time 5 --cacert "$state/pki/etcd-ca.crt" --cert "$state/pki/apiserver-etcd-client.crt" \
  --key "$state/pki/apiserver-etcd-client.key" "https://127.0.0.1:$port/v3/kv/range" -d "$range")
[[ "$admin" == *'"count"'* ]] || fail "etcd did not answer the apiserver's certificate: $admin"
planted=$(curl -s --max-time 5 --cacert "$state/pki/etcd-ca.crt" --cert "$state/pki/apiserver-etcd-client.crt" \
  --key "$state/pki/apiserver-etcd-client.key" "https://127.0.0.1:$port/v3/kv/range" -d "${put%,*}}")
[[ "$planted" != *'"kvs"'* ]] || fail "the plain-http write landed: $planted"
say "ok: etcd refuses plain http (answer: ${plain:-empty}) and certificate-less TLS, answers the apiserver's certificate ($endpoint)"

# 4. down and pid files.
sleep 600 &
decoy=$!
echo "$decoy 1" >"$state/pids/scheduler"
apiserver=$(awk '{print $1}' "$state/pids/apiserver")
bash "$cluster" down >/dev/null
kill -0 "$decoy" 2>/dev/null || fail "down killed pid $decoy, which its pid file named with the wrong start time"
! kill -0 "$apiserver" 2>/dev/null || fail "down left the apiserver (pid $apiserver) running"
[ ! -e "$state" ] || fail "down left $state"
say "ok: down stops the cluster's processes and spares a pid its files do not name exactly"

# 5. Pinned tools.
eval "$(grep -E '^(K8S_VERSION|KUBECTL_LAYER_[A-Z0-9_]*|KUBECTL_SHA256|HELM_SHA256|CACHE_DIR|TOOLS_BIN)=' "$cluster")"
tools=$TOOLS_BIN
echo "$KUBECTL_SHA256  $tools/kubectl" | sha256sum -c --quiet - || fail "$tools/kubectl is not the pinned build"
echo "$HELM_SHA256  $tools/helm" | sha256sum -c --quiet - || fail "$tools/helm is not the pinned build"
say "ok: kubectl and helm in $tools have the pinned SHA-256"
