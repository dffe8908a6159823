#!/usr/bin/env bash
# The two attacks of issue 17, on loopback, bounded in time and connections, against
# the release webhook (or WEBHOOK_BIN, e.g. an older build to compare):
#
#   trickle  140 connections each send a request head announcing 100 bytes and one
#            byte of body, each replaced by a new one every 0.5 s; meanwhile one
#            client makes ordinary calls (a new connection each, 20 ms apart), once
#            against a webhook that checks Commerce's signature (the calls signed)
#            and once against one without authentication.
#   idle     1,030 TCP connections that send nothing (re-opened when closed), with
#            the same ordinary calls.
#
# Reports, per case, how many ordinary calls were answered {"op":"success"} and
# their p50/p99 latency.
#
#   scripts/attack-webhook.sh [SECONDS]      (default 10 per case)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
port=18097
if [ -z "${WEBHOOK_BIN:-}" ]; then
  bash scripts/release-build.sh -p commerce-webhook --bins
  WEBHOOK_BIN="$(bash scripts/release-build.sh --print-dir)/commerce-webhook"
fi
command -v openssl >/dev/null || { echo "openssl is needed" >&2; exit 1; }
ulimit -n 8192 2>/dev/null || ulimit -n 4096
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

body='{"data":{"cart_id":"42","items":[{"item_id":1,"sku":"MS-01","qty":1}]}}'
printf '%s' "$body" >"$work/body"
openssl genrsa -out "$work/key.pem" 2048 2>/dev/null
openssl rsa -in "$work/key.pem" -pubout -out "$work/pub.pem" 2>/dev/null
# Commerce signs the base64 of the body (RSA-SHA256), and sends it base64-encoded.
base64 -w0 "$work/body" >"$work/signed"
signature=$(openssl dgst -sha256 -sign "$work/key.pem" "$work/signed" | base64 -w0)

start() { # extra environment...
  env PORT=$port LOG_LEVEL=error "$@" "$WEBHOOK_BIN" --bind-address 127.0.0.1 >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && return 0; sleep 0.1; done
  echo "the webhook did not start" >&2; exit 1
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }

attack() { # name kind signature
  python3 - "$port" "$seconds" "$1" "$2" "$3" "$body" <<'PY'
import asyncio, statistics, sys, time
port, seconds, name, kind, signature, body = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6].encode()
HOST = "127.0.0.1"
head = b"POST /webhook/check-stock HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\n"
if signature != "-":
    head += b"x-adobe-commerce-webhook-signature: " + signature.encode() + b"\r\n"
end = time.monotonic() + seconds

async def trickler():
    while time.monotonic() < end:
        try:
            _, w = await asyncio.open_connection(HOST, port)
            w.write(head + b"content-length: 100\r\n\r\n{")
            await w.drain()
            await asyncio.sleep(0.5)
            w.close()
        except OSError:
            await asyncio.sleep(0.05)

async def idler():
    while time.monotonic() < end:
        try:
            r, w = await asyncio.open_connection(HOST, port)
            await asyncio.wait_for(r.read(1), timeout=max(0.01, end - time.monotonic()))
            w.close()
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.01)

async def call():
    started = time.monotonic()
    try:
        r, w = await asyncio.open_connection(HOST, port)
        w.write(head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        await w.drain()
        answer = await asyncio.wait_for(r.read(), timeout=5)
        w.close()
        return answer.endswith(b'{"op":"success"}'), time.monotonic() - started
    except (OSError, asyncio.TimeoutError):
        return False, time.monotonic() - started

async def main():
    attackers = [asyncio.create_task(trickler() if kind == "trickle" else idler())
                 for _ in range(140 if kind == "trickle" else 1030)]
    await asyncio.sleep(1.0)  # the attack is in place
    results = []
    while time.monotonic() < end:
        results.append(await call())
        await asyncio.sleep(0.02)
    for task in attackers:
        task.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    ok = sum(1 for good, _ in results if good)
    lat = sorted(t * 1000 for _, t in results)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"{name:<34} {ok:>4}/{len(results):<4} success ({100 * ok / max(1, len(results)):5.1f}%)  "
          f"p50 {statistics.median(lat):7.1f} ms  p99 {p99:7.1f} ms")

asyncio.run(main())
PY
}

echo "binary: $WEBHOOK_BIN; $seconds s per case"
start COMMERCE_WEBHOOKS_PUBLIC_KEY="$(cat "$work/pub.pem")"
attack "trickle, signed calls" trickle "$signature"
stop
start
attack "trickle, unauthenticated calls" trickle -
attack "1,030 idle connections" idle -
stop
start BACKOFFICE_ON_ERROR=allow
attack "trickle, unauthenticated, allow" trickle -
stop
