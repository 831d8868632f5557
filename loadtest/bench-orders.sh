#!/usr/bin/env bash
# Orders per second through gateway -> order -> delivery (durable commits), 16 concurrent
# clients, and the event lag from DeliveryRegistered to the stock change.
#
#   loadtest/bench-orders.sh [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
command -v wrk >/dev/null || { echo "missing wrk: apt-get install -y wrk" >&2; exit 1; }
swift build -c release >/dev/null 2>&1
DATA=$(mktemp -d)
.build/release/maskshop up --data-dir "$DATA" --config config/gateway.json > "$DATA/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do curl -sf localhost:8080/inventories/1 >/dev/null 2>&1 && break; curl -sf -X PUT localhost:8080/inventories/1 -d '{"stock":100000000}' >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf -X PUT localhost:8080/inventories/1 -d '{"stock":100000000}' >/dev/null

cat > "$DATA/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"orderId":1111,"productId":1,"qty":1}'
wrk.headers["Content-Type"] = "application/json"
LUA
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "wrk -t2 -c16 -d${DURATION}s POST /orders through the gateway (WAL, synchronous=NORMAL)"
wrk -t2 -c16 -d"${DURATION}s" --latency -s "$DATA/post.lua" http://127.0.0.1:8080/orders | grep -E "Requests/sec|Non-2xx|50%|90%|99%|requests in"
ORDERS=$(curl -s localhost:8080/orders | python3 -c 'import json,sys; print(sum(1 for o in json.load(sys.stdin) if o["status"]=="ordered"))')
# Event lag: time until inventory has applied every DeliveryRegistered (stock = start - orders).
START=$(date +%s.%N)
for _ in $(seq 1 600); do
  STOCK=$(curl -s localhost:8080/inventories/1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["stock"])')
  [ "$STOCK" -eq $((100000000 - ORDERS)) ] && break
  sleep 0.05
done
END=$(date +%s.%N)
echo "orders placed: $ORDERS; stock caught up $(python3 -c "print(round(($END-$START)*1000))") ms after the load stopped"
