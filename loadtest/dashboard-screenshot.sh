#!/usr/bin/env bash
# The admin dashboard under the seed's breaker test, as a picture (docs/dashboard.png): the shop
# behind the gateway with config/circuit-breaker.json (delivery: maxConnections 1,
# http1MaxPendingRequests 1, maxRequestsPerConnection 1), `loadtest -c2 -t10S` posting to
# /deliveries (the seed's siege line), and headless Chromium showing http://127.0.0.1:9901/
# for 8 s of that load before the screenshot. Then loadtest's summary and the gateway's counters,
# to read beside the picture.
#
#   loadtest/dashboard-screenshot.sh [PNG, default docs/dashboard.png]
#   BIN=.build/debug loadtest/dashboard-screenshot.sh     # use these binaries, build nothing
#
# Needs chromium (apt-get install chromium) and python3; uses the config's ports (8080, 9901,
# 8081-8084), which must be free.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/dashboard.png}
if [ -z "${BIN:-}" ]; then
  swift build -c release >/dev/null 2>&1
  BIN=.build/release
fi
for port in 8080 9901 8081 8082 8083 8084; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; config/circuit-breaker.json needs it" >&2
    exit 1
  fi
done

WORK=$(mktemp -d)
SHOP=""
LOAD=""
cleanup() {
  for pid in $LOAD $SHOP; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/maskshop" up --data-dir "$WORK/data" --config config/circuit-breaker.json --access-log off > "$WORK/up.log" 2>&1 &
SHOP=$!
for _ in $(seq 1 150); do
  grep -q "all healthy" "$WORK/up.log" 2>/dev/null && break
  sleep 0.2
done
grep -q "all healthy" "$WORK/up.log" || { echo "the shop did not start:" >&2; cat "$WORK/up.log" >&2; exit 1; }

URL='http://127.0.0.1:8080/deliveries POST {"orderId":1,"productId":1111,"qty":10}'
"$BIN/loadtest" -c2 -t10S "$URL" > "$WORK/loadtest.txt" 2>&1 &
LOAD=$!
python3 loadtest/dashboard-shot.py http://127.0.0.1:9901/ --wait 8 --size 1280x900 --out "$OUT"
wait "$LOAD"
LOAD=""
echo "screenshot: $OUT"
echo "loadtest -c2 -t10S '$URL':"
sed 's/^/  /' "$WORK/loadtest.txt"
echo "gateway counters:"
curl -s 127.0.0.1:9901/stats | grep -E "^cluster\.delivery\.(upstream_rq_total|upstream_rq_2xx|upstream_rq_pending_overflow|upstream_cx_overflow):" | sed 's/^/  /'
