#!/usr/bin/env bash
# Abuses the release webhook (or WEBHOOK_BIN, e.g. an older build to compare) on
# loopback and checks that it holds up: while 500 connections send their request
# head slowly and 50 clients upload 1 MiB bodies in 1-byte chunks (each re-opened as
# soon as the server closes it; a Python client in its own process), wrk makes
# ordinary calls on 4 connections, each waiting 5 ms between calls
# (bench/check-stock-paced.lua). Reports the webhook's peak RSS and the ordinary
# calls' latencies.
#
#   scripts/stress-webhook.sh [SECONDS]      (default 15; loopback only, bounded)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
port=18095
if [ -z "${WEBHOOK_BIN:-}" ]; then
  bash scripts/release-build.sh -p commerce-webhook --bins
  WEBHOOK_BIN="$(bash scripts/release-build.sh --print-dir)/commerce-webhook"
fi
PORT=$port LOG_LEVEL=error "$WEBHOOK_BIN" --bind-address 127.0.0.1 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
ulimit -n 4096 2>/dev/null || true
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
before_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
python3 - "$port" "$((seconds + 2))" "$pid" <<'PY' 2>/dev/null &
import asyncio, sys, time
port, seconds, pid = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
HOST = "127.0.0.1"
end = time.monotonic() + seconds
reopened = {"slow": 0, "upload": 0}

async def slow_header():
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"POST /webhook/check-stock HTTP/1.1\r\nhost: x\r\n")
            while time.monotonic() < end:
                writer.write(b"x")  # one byte of a header that never ends
                await writer.drain()
                await asyncio.sleep(1)
                if reader.at_eof():
                    break
            writer.close()
        except Exception:
            await asyncio.sleep(0.1)
        reopened["slow"] += 1

async def upload():
    head = (b"POST /webhook/check-stock HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    while time.monotonic() < end:
        answered = None
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(head)
            answered = asyncio.ensure_future(reader.read(1))
            for _ in range(1 << 20):
                if answered.done() or time.monotonic() >= end:
                    break
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
            writer.close()
        except Exception:
            await asyncio.sleep(0.01)
        finally:
            if answered is not None:
                answered.cancel()
                await asyncio.gather(answered, return_exceptions=True)
        reopened["upload"] += 1

async def main():
    await asyncio.gather(*[slow_header() for _ in range(500)], *[upload() for _ in range(50)])
    print(f"connections re-opened after the server closed them: slow-header {reopened['slow']}, upload {reopened['upload']}")

asyncio.run(main())
PY
abuser=$!
sleep 2 # let the abusive connections open
peak_kb=0
( while kill -0 "$abuser" 2>/dev/null; do
    awk '/VmRSS/ {print $2}' "/proc/$pid/status"; sleep 0.1; done ) >"/tmp/stress-rss.$$" &
sampler=$!
wrk -t1 -c4 -d"${seconds}s" --latency -s bench/check-stock-paced.lua "http://127.0.0.1:$port/webhook/check-stock" \
  | grep -E "Requests/sec|Latency|Non-2xx|Socket errors|^ +(50|90|99)%|requests in"
wait "$abuser" || true
wait "$sampler" || true
peak_kb=$(sort -n "/tmp/stress-rss.$$" | tail -1)
rm -f "/tmp/stress-rss.$$"
echo "webhook RSS: $((before_kb / 1024)) MiB before, peak sampled $((peak_kb / 1024)) MiB, VmHWM $(( $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") / 1024 )) MiB"
