#!/usr/bin/env bash
# The seed's circuit-breaker demonstration as text: siege -c2 -t10S against the delivery route,
# first without the breaker (config/gateway.json), then with the seed's DestinationRule
# (config/circuit-breaker.json: maxConnections 1, http1MaxPendingRequests 1,
# maxRequestsPerConnection 1), with the gateway's overflow counters; then Istio's task
# (fortio -n 20 -c 2 / -n 30 -c 3 → loadtest -c2 -r10 / -c3 -r10) with 200/503 counts.
# loadtest is run with siege's own command line: -c2 -t10S -v 'URL POST {json}'.
#
#   loadtest/seed-circuit-breaker.sh [duration, default 10S]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10S}
swift build -c release >/dev/null 2>&1
BIN=.build/release
WORK=$(mktemp -d)
UP=""
stop_shop() { if [ -n "$UP" ]; then kill "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; UP=""; fi; }
trap 'stop_shop; rm -rf "$WORK"' EXIT

start_shop() { # config
  "$BIN/maskshop" up --data-dir "$WORK/data-$(basename "$1" .json)" --config "$1" > "$WORK/up.log" 2>&1 &
  UP=$!
  for _ in $(seq 1 150); do
    grep -q "all healthy" "$WORK/up.log" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "the shop did not start:" >&2; cat "$WORK/up.log" >&2; exit 1
}

# POST /deliveries, as order's synchronous call does (each user a new orderId per request is not
# needed: delivery is idempotent per orderId, so the load is the same either way).
URL='http://127.0.0.1:8080/deliveries POST {"orderId":1,"productId":1111,"qty":10}'

# -v prints a line per transaction: the first five, a count of the rest, and the summary.
shorten() {
  awk '/^HTTP\/1/ { n++; if (n <= 5) print; next }
       { if (n > 5 && !told) { print "  ... " n - 5 " more transaction lines"; told = 1 } print }'
}

overflow() {
  curl -s 127.0.0.1:9901/stats | grep -E "cluster.delivery.(upstream_rq_pending_overflow|upstream_cx_overflow|upstream_rq_total):" | sed 's/^/  /'
}

for config in config/gateway.json config/circuit-breaker.json; do
  echo "=== $config: loadtest -c2 -t$DURATION -v '$URL' ==="
  start_shop "$config"
  "$BIN/loadtest" -c2 -t"$DURATION" -v "$URL" | shorten
  echo "gateway counters:"; overflow
  stop_shop
  echo
done

echo "=== Istio's circuit-breaking task with config/circuit-breaker.json ==="
start_shop config/circuit-breaker.json
for c in 2 3; do
  out=$("$BIN/loadtest" -c"$c" -r10 -b -q --json "$URL")
  python3 - "$c" "$out" <<'PY'
import json, sys
c, s = sys.argv[1], json.loads(sys.argv[2])
codes = s["status_codes"]
print(f"loadtest -c{c} -r10 (fortio -c {c} -n {int(c) * 10}): {s['responses']} calls, "
      f"200: {codes.get('200', 0) + codes.get('201', 0)}, 503: {codes.get('503', 0)}, failed {s['failed_transactions']}")
PY
done
echo "gateway counters:"; overflow
