#!/usr/bin/env bash
# Compares two builds of the webhook, e.g. before and after a change, or the bare
# baseline (target/x86_64-unknown-linux-gnu/release/examples/bare_success) and the
# webhook, in one run:
# both servers on CPU 1 (one loaded at a time), wrk on CPU 0, so that each server's
# own cost per call decides its throughput. Each round loads A, then B, then A again
# for 1 s each; B/A is against the mean of the two A runs, which cancels the drift of
# a shared machine. Prints the median and quartiles of B/A over the rounds.
#
#   scripts/bench-webhook-ab.sh OLD_BINARY NEW_BINARY [ROUNDS]      (default 15)
#
# A binary of another revision:
#   git worktree add /tmp/old <rev> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#     scripts/release-build.sh -p commerce-webhook --bins)
#   # then /tmp/old-target/x86_64-unknown-linux-gnu/release/commerce-webhook
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
a=$1 b=$2 rounds=${3:-15}
for tool in wrk taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
PORT=18390 LOG_LEVEL=warn taskset -c 1 "$a" --bind-address 127.0.0.1 >/dev/null 2>&1 &
pids+=($!)
PORT=18391 LOG_LEVEL=warn taskset -c 1 "$b" --bind-address 127.0.0.1 >/dev/null 2>&1 &
pids+=($!)
for port in 18390 18391; do
  # Any HTTP answer will do: the bare baseline has no /healthz.
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
done

load() { # port script -> req/s
  taskset -c 0 wrk -t1 -c32 -d1s -s "bench/$2.lua" "http://127.0.0.1:$1/webhook/check-stock" |
    awk '/Requests\/sec/ {print $2}'
}
for _ in $(seq 1 "$rounds"); do
  for script in check-stock add-to-cart; do
    echo "$script $(load 18390 "$script") $(load 18391 "$script") $(load 18390 "$script")"
  done
done | python3 -c '
import statistics, sys
ratios = {}
for line in sys.stdin:
    script, a, b, a2 = line.split()
    ratios.setdefault(script, []).append(float(b) / ((float(a) + float(a2)) / 2))
for script, values in ratios.items():
    values.sort()
    q1, q3 = values[len(values) // 4], values[3 * len(values) // 4]
    print(f"{script}: B/A throughput {statistics.median(values):.2f}x (quartiles {q1:.2f}-{q3:.2f}, {len(values)} rounds)")
'
