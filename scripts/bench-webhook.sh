#!/usr/bin/env bash
# Loads the check-stock webhook and a bare axum baseline in the same run, on
# loopback, alternating them round by round so both see the same machine state.
#
#   scripts/bench-webhook.sh [ROUNDS] [SECONDS]      (default 9 rounds of 10 s: with wrk
#                                                    sharing the cores, a round moves by
#                                                    ±10%, so fewer rounds disagree)
#
# Three payloads: the starter kit's cart (bench/check-stock.lua), the field-selected
# add-to-cart hook payload (bench/field-selected.lua) and a real add-to-cart default
# event of ~3 KB (bench/add-to-cart.lua), each also sent to the baseline so that both
# sides move the same bytes.
# Reports, per server and payload: req/s and p99 at 64 connections, p50/p99 at 1
# connection, peak RSS of the webhook, and the back-office path against a loopback stub.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}
seconds=${2:-10}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

bash scripts/release-build.sh -p commerce-webhook --bins --examples
target=$(bash scripts/release-build.sh --print-dir)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

start() { # name port command...
  local name=$1 port=$2; shift 2
  PORT=$port LOG_LEVEL=warn "$@" >/dev/null 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
    curl -s -o /dev/null -X POST "http://127.0.0.1:$port/webhook/check-stock" 2>/dev/null && return 0
    curl -s -o /dev/null -X POST "http://127.0.0.1:$port/stock" 2>/dev/null && return 0
    sleep 0.1; done
  echo "$name did not start" >&2; exit 1
}

start bare 18090 "$target/examples/bare_success"
start inventory 18091 "$target/commerce-webhook" --bind-address 127.0.0.1
start stub 18092 "$target/examples/backoffice_stub"
start backoffice 18093 "$target/commerce-webhook" --bind-address 127.0.0.1 --backoffice-url http://127.0.0.1:18092/stock

# Sanity: the real service answers success for the benchmark cart.
answer=$(curl -s -H 'content-type: application/json' -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" bench/check-stock.lua)" http://127.0.0.1:18091/webhook/check-stock)
[ "$answer" = '{"op":"success"}' ] || { echo "unexpected answer: $answer" >&2; exit 1; }
answer=$(curl -s -H 'content-type: application/json' --data-binary @webhook/tests/fixtures/add-to-cart-simple.json http://127.0.0.1:18091/webhook/check-stock)
[ "$answer" = '{"op":"success"}' ] || { echo "unexpected add-to-cart answer: $answer" >&2; exit 1; }

# wrk prints latencies like 1.23ms / 45.00us / 1.02s: convert to microseconds.
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000000} else print v}'; }
load() { # port connections seconds script -> "rps p50_us p99_us"
  local out
  out=$(wrk -t"$([ "$2" -gt 1 ] && echo 2 || echo 1)" -c"$2" -d"$3"s --latency -s "$4" "http://127.0.0.1:$1/webhook/check-stock")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_us)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_us)
  echo "$rps $p50 $p99"
}

results=$(mktemp)
for round in $(seq 1 "$rounds"); do
  for server in bare:18090:check-stock inventory:18091:check-stock bare_sel:18090:field-selected inventory_sel:18091:field-selected bare_add:18090:add-to-cart inventory_add:18091:add-to-cart backoffice:18093:check-stock; do
    IFS=: read -r name port script <<<"$server"
    read -r rps _ p99 <<<"$(load "$port" 64 "$seconds" "bench/$script.lua")"
    read -r _ p50_1 p99_1 <<<"$(load "$port" 1 "$((seconds / 2 > 0 ? seconds / 2 : 1))" "bench/$script.lua")"
    echo "$round $name $rps $p99 $p50_1 $p99_1" | tee -a "$results" >&2
  done
done
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid_inventory/status")
rss_backoffice_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid_backoffice/status")

python3 - "$results" "$rss_kb" "$rss_backoffice_kb" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r[1], []).append([float(x) for x in r[2:]])
def med(name, i): return statistics.median(v[i] for v in by[name])
def rng(name, i): return f"{min(v[i] for v in by[name]):.0f}-{max(v[i] for v in by[name]):.0f}"
print(f"rounds: {len(by['bare'])} (alternating servers); medians, with the range over rounds for p99")
print(f"{'server, payload':<24}{'req/s @64':>10}{'p99 @64 (us)':>18}{'p50 @1 (us)':>14}{'p99 @1 (us)':>16}")
for name, label in [("bare","bare axum, cart"),("inventory","webhook, cart"),("bare_sel","bare axum, selected"),("inventory_sel","webhook, selected"),("bare_add","bare axum, add-to-cart"),("inventory_add","webhook, add-to-cart"),("backoffice","webhook, back-office")]:
    print(f"{label:<24}{med(name,0):>10.0f}{rng(name,1):>18}{med(name,2):>14.0f}{rng(name,3):>16}")
ratio = med("inventory",0)/med("bare",0)
ratio_add = med("inventory_add",0)/med("bare_add",0)
ratio_sel = med("inventory_sel",0)/med("bare_sel",0)
lat = med("inventory",2)/med("bare",2)
lat_sel = med("inventory_sel",2)/med("bare_sel",2)
def spread(a, b):
    rs = [x[0]/y[0] for x, y in zip(by[a], by[b])]
    return f"(rounds {min(rs):.2f}-{max(rs):.2f})"
print(f"throughput webhook/bare, starter-kit cart: {ratio:.2f}x {spread('inventory','bare')}")
print(f"throughput webhook/bare, field-selected hook payload: {ratio_sel:.2f}x {spread('inventory_sel','bare_sel')}")
print(f"p50 latency @1 webhook/bare, field-selected: {lat_sel:.2f}x")
print(f"throughput webhook/bare, add-to-cart event (~3 KB): {ratio_add:.2f}x {spread('inventory_add','bare_add')}")
print(f"p50 latency @1 webhook/bare: {lat:.2f}x")
print(f"peak RSS: webhook (inventory) {int(sys.argv[2])/1024:.1f} MiB, webhook (back-office) {int(sys.argv[3])/1024:.1f} MiB")
PY
