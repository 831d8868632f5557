#!/usr/bin/env bash
# Orders per second through gateway -> order -> delivery with durable commits, 16 concurrent
# clients (wrk), and the event lag from DeliveryRegistered (its occurredAt at delivery) to the
# stock change committed at inventory (inventory's GET /stats/lag, per event).
#
#   loadtest/bench-orders.sh [seconds=10] [durability=full|normal]
#
# Env: SCRATCH (build folder, default .build), BASE_PORT (default 18080: listener BASE_PORT,
# services BASE_PORT+1..+4, admin BASE_PORT+1821), CONNECTIONS (16), SKIP_BUILD=1.
# The shop runs under `maskshop up` with a copy of config/gateway.json moved to those ports.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
DURABILITY=${2:-full}
SCRATCH=${SCRATCH:-.build}
BASE=${BASE_PORT:-18080}
CONNECTIONS=${CONNECTIONS:-16}
command -v wrk >/dev/null || { echo "missing wrk: apt-get install -y wrk" >&2; exit 1; }
if [ -z "${SKIP_BUILD:-}" ]; then
  swift build -c release --scratch-path "$SCRATCH" --product maskshop >/dev/null
  swift build -c release --scratch-path "$SCRATCH" --product gateway >/dev/null
fi
BIN="$SCRATCH/release"
LISTEN=$BASE; ADMIN=$((BASE + 1821)); ORDER=$((BASE + 1)); DELIVERY=$((BASE + 2)); INVENTORY=$((BASE + 3)); MYPAGE=$((BASE + 4))
DATA=$(mktemp -d)
sed -e "s/\"port\": 8080}/\"port\": $LISTEN}/" -e "s/\"port\": 9901}/\"port\": $ADMIN}/" \
    -e "s/\"port\": 8081}/\"port\": $ORDER}/" -e "s/\"port\": 8082}/\"port\": $DELIVERY}/" \
    -e "s/\"port\": 8083}/\"port\": $INVENTORY}/" -e "s/\"port\": 8084}/\"port\": $MYPAGE}/" \
    config/gateway.json > "$DATA/gateway.json"
"$BIN/maskshop" up --data-dir "$DATA/db" --config "$DATA/gateway.json" --durability "$DURABILITY" \
  --access-log "$DATA/access.log" > "$DATA/up.log" 2>&1 &
UP=$!
cleanup() { kill -TERM $UP 2>/dev/null || true; wait $UP 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 150); do grep -q "all healthy" "$DATA/up.log" && break; kill -0 $UP 2>/dev/null || { cat "$DATA/up.log"; exit 1; }; sleep 0.2; done
G=http://127.0.0.1:$LISTEN
STOCK0=100000000
curl -sf -X PUT "$G/inventories/1" -H 'content-type: application/json' -d "{\"stock\":$STOCK0}" >/dev/null

cat > "$DATA/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"orderId":1111,"productId":1,"qty":1}'
wrk.headers["Content-Type"] = "application/json"
LUA
machine_line
echo "durability: WAL, synchronous=$(echo "$DURABILITY" | tr a-z A-Z), group commit"
wrk -t1 -c"$CONNECTIONS" -d2s -s "$DATA/post.lua" "$G/orders" >/dev/null   # warm-up
curl -sf -X DELETE "http://127.0.0.1:$INVENTORY/stats/lag" >/dev/null
# CPU time (user+system clock ticks) of the gateway and each service, to divide by the orders:
# on a shared machine this is steadier than the rate itself.
cpu_ticks() {
  for pid in $(pgrep -P $UP); do
    name=$(tr '\0' ' ' < /proc/$pid/cmdline | awk '{n=$1; sub(".*/", "", n); print (n == "maskshop" ? $2 : n)}')
    echo "$name $(awk '{print $14 + $15}' /proc/$pid/stat)"
  done
}
CPU0=$(cpu_ticks)
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency POST /orders through the gateway"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$DATA/post.lua" "$G/orders" | tee "$DATA/wrk.txt" \
  | grep -E "Requests/sec|Non-2xx|Socket errors| 50%| 90%| 99%|requests in"
CPU1=$(cpu_ticks)
REQS=$(awk '/requests in/ {print $1}' "$DATA/wrk.txt")
echo "CPU per order (ms): $(join <(sort <<<"$CPU0") <(sort <<<"$CPU1") | awk -v n="$REQS" -v hz="$(getconf CLK_TCK)" \
  '{d = ($3 - $2) * 1000 / hz / n; t += d; printf "%s %.3f, ", $1, d} END {printf "total %.3f", t}')"
ORDERED=$(curl -s "$G/orders" | python3 -c 'import json,sys; print(sum(1 for o in json.load(sys.stdin) if o["status"]=="ordered"))')
OTHER=$(curl -s "$G/orders" | python3 -c 'import json,sys; print(sum(1 for o in json.load(sys.stdin) if o["status"]!="ordered"))')
DELIVERIES=$(curl -s "$G/deliveries" | python3 -c 'import json,sys; print(sum(1 for d in json.load(sys.stdin) if d["status"]=="ordered"))')
for _ in $(seq 1 600); do
  STOCK=$(curl -s "$G/inventories/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stock"])')
  [ "$STOCK" -eq $((STOCK0 - ORDERED)) ] && break
  sleep 0.05
done
echo "orders ordered: $ORDERED (not ordered: $OTHER), live deliveries: $DELIVERIES, stock: $STOCK (expected $((STOCK0 - ORDERED)))"
echo "event lag DeliveryRegistered -> stock change (ms): $(curl -s "http://127.0.0.1:$INVENTORY/stats/lag")"
