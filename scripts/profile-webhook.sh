#!/usr/bin/env bash
# Where the webhook's CPU goes per call, against the bare baseline: each server runs
# under callgrind, which counts instructions (the same count run to run, whatever
# else the machine does), while wrk posts a payload on 4 connections for 5 s after a
# 2 s warm-up. Prints the user-space instructions per request of both (the kernel's
# share, the same for both, is not counted) and the webhook's own stages by their
# inclusive cost per request.
#
#   scripts/profile-webhook.sh [PAYLOAD]     bench/PAYLOAD.lua (default: check-stock,
#                                            also field-selected, add-to-cart)
#
# Builds the release profile with its symbols kept (CARGO_PROFILE_RELEASE_STRIP=none),
# with the examples as scripts/bench-webhook.sh builds them (which also turns on the
# dev-dependencies' features, tokio's test-util among them), and rebuilds the release
# target to do so.
set -euo pipefail
cd "$(dirname "$0")/.."
payload=${1:-check-stock}
[ -f "bench/$payload.lua" ] || { echo "no bench/$payload.lua" >&2; exit 2; }
for tool in valgrind callgrind_annotate callgrind_control wrk; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install valgrind wrk)" >&2; exit 1; }
done
CARGO_PROFILE_RELEASE_STRIP=none bash scripts/release-build.sh -p commerce-webhook --bins --examples
target=$(bash scripts/release-build.sh --print-dir)
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# profile NAME BINARY -> "requests instructions" and $work/NAME.out.1
profile() {
  local name=$1 binary=$2 port=18790 out requests
  PORT=$port LOG_LEVEL=warn valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" \
    "$binary" --bind-address 127.0.0.1 >/dev/null 2>"$work/$name.log" &
  pid=$!
  for _ in $(seq 1 150); do
    curl -s -o /dev/null -X POST "http://127.0.0.1:$port/webhook/check-stock" && break
    sleep 0.2
  done
  wrk -t1 -c4 -d2s -s "bench/$payload.lua" "http://127.0.0.1:$port/webhook/check-stock" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c4 -d5s -s "bench/$payload.lua" "http://127.0.0.1:$port/webhook/check-stock")
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$requests $(callgrind_annotate "$work/$name.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
}

read -r bare_requests bare_total <<<"$(profile bare "$target/examples/bare_success")"
read -r hook_requests hook_total <<<"$(profile webhook "$target/commerce-webhook")"
echo "payload bench/$payload.lua, user-space instructions per request (callgrind):"
echo "  bare axum: $((bare_total / bare_requests)) over $bare_requests requests"
echo "  webhook:   $((hook_total / hook_requests)) over $hook_requests requests"
echo "the webhook's stages, inclusive, per request:"
callgrind_annotate --inclusive=yes --threshold=100 "$work/webhook.out.1" 2>/dev/null |
  python3 -c '
import re, sys
requests = int(sys.argv[1])
stages = [
    ("the check-stock handler, all of it", r"Handler<\(M,T1,T2\),S>>::call::\{\{closure\}\}"),
    ("  the request body, polled from hyper", r"Incoming as http_body::Body>::poll_frame"),
    ("  the payload: parse and validate", r"commerce_webhook::payload::parse_check_stock \["),
    ("    serde_json into the model", r"commerce_webhook::payload::model::read_body \["),
    ("    repeated members refused", r"commerce_webhook::payload::model::Keys::insert \["),
    ("  the stock lookup", r"StockSource>::availability \["),
    ("  shortages against the cart", r"commerce_webhook::stock::shortages \["),
]
costs = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(", line)
    if not m:
        continue
    for label, pattern in stages:
        if label not in costs and re.search(pattern, line):
            costs[label] = int(m.group(1).replace(",", ""))
for label, _ in stages:
    print(f"  {label:<40} {costs.get(label, 0) / requests:>8.0f}")
' "$hook_requests"
