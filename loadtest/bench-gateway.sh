#!/usr/bin/env bash
# Gateway vs HAProxy in front of the same nginx, measured side by side in one run.
#
#   loadtest/bench-gateway.sh [seconds per run, default 10] [rounds, default 3]
#
# nginx (1 worker) serves a 27-byte JSON; HAProxy and the gateway proxy to it with keep-alive
# both sides; wrk -t1 -c64 drives each in turn, rounds interleaved so machine noise hits all alike.
# A last run measures shedding: the gateway answering 503 UO for a cluster whose one connection
# and one pending slot are held by a stuck upstream.
#
# BASELINE_GATEWAY=<binary>: also runs that gateway (an earlier commit's release build) with the
# same config and two event loops, interleaved in every round, to compare old and new code:
#   git worktree add /tmp/gw-base <commit> && swift build -c release --product gateway --package-path /tmp/gw-base
#   BASELINE_GATEWAY=/tmp/gw-base/.build/release/gateway loadtest/bench-gateway.sh 10 5
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-3}
require_tools "apt-get install -y haproxy nginx-light wrk curl" nginx haproxy wrk curl
# GATEWAY_BIN=<binary>: measure that build instead of building this tree's.
gateway_binary

bench_init
NGINX_PORT=18090 HAPROXY_PORT=18091 GATEWAY_PORT=18092 ADMIN_PORT=18093 STUCK_PORT=18094
GATEWAY1_PORT=18095 ADMIN1_PORT=18096 BASE_PORT=18097 BASE_ADMIN_PORT=18098
start_nginx "$NGINX_PORT"
start_haproxy haproxy "$HAPROXY_PORT" "$NGINX_PORT" 4000
HAPROXY_PID=$PID

# A stuck upstream: accepts TCP, never answers, so the shedding cluster's one connection and
# one pending slot stay taken.
python3 - "$STUCK_PORT" >/dev/null 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)
PY
pids+=($!)

cat > "$WORK/gateway.json" <<CONF
{"listener": {"address": "127.0.0.1", "port": $GATEWAY_PORT}, "admin": {"address": "127.0.0.1", "port": $ADMIN_PORT},
 "serviceEntries": [{"host": "nginx", "endpoints": [{"address": "127.0.0.1", "port": $NGINX_PORT}]},
                    {"host": "stuck", "endpoints": [{"address": "127.0.0.1", "port": $STUCK_PORT}]}],
 "virtualServices": [{"http": [
   {"name": "shed", "match": [{"uri": {"prefix": "/shed"}}], "route": [{"destination": {"host": "stuck"}}], "retries": {"attempts": 0}},
   {"name": "all", "route": [{"destination": {"host": "nginx"}}]}]}],
 "destinationRules": [{"host": "stuck", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}}}]}
CONF
"$GATEWAY" --config "$WORK/gateway.json" --access-log off --threads "${GATEWAY_THREADS:-2}" >/dev/null 2>"$WORK/gateway.err" &
pids+=($!)
GATEWAY_PID=$!
# The same gateway with one event loop: on two cores shared with nginx and wrk it trades a little
# throughput for a shorter tail, so both are shown.
sed -e "s/\"port\": $GATEWAY_PORT}/\"port\": $GATEWAY1_PORT}/" -e "s/\"port\": $ADMIN_PORT}/\"port\": $ADMIN1_PORT}/" \
  "$WORK/gateway.json" > "$WORK/gateway1.json"
"$GATEWAY" --config "$WORK/gateway1.json" --access-log off --threads 1 >/dev/null 2>"$WORK/gateway1.err" &
pids+=($!)
GATEWAY1_PID=$!
if [ -n "${BASELINE_GATEWAY:-}" ]; then
  sed -e "s/\"port\": $GATEWAY_PORT}/\"port\": $BASE_PORT}/" -e "s/\"port\": $ADMIN_PORT}/\"port\": $BASE_ADMIN_PORT}/" \
    "$WORK/gateway.json" > "$WORK/baseline.json"
  "$BASELINE_GATEWAY" --config "$WORK/baseline.json" --access-log off --threads "${GATEWAY_THREADS:-2}" >/dev/null 2>"$WORK/baseline.err" &
  pids+=($!)
  BASELINE_PID=$!
fi
sleep 1

run() { # name url [pid] -> prints "name rps p50 p99 non-2xx [CPU µs per request of pid]"
  local before=0
  [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
  local out
  out=$(wrk -t1 -c64 -d"${DURATION}s" --latency "$2")
  local rps p50 p99 non2xx requests cpu=""
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  if [ -n "${3:-}" ]; then
    cpu=$(awk -v t="$(( $(cpu_ticks "$3") - before ))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
      'BEGIN {printf "cpu %.2f us/req", t * 1e6 / hz / n}')
  fi
  printf "%-10s %10s req/s   p50 %-8s p99 %-8s non-2xx %-4s %s\n" "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu"
}

machine_line
echo "wrk -t1 -c64 -d${DURATION}s, $ROUNDS interleaved rounds"
for r in $(seq 1 "$ROUNDS"); do
  echo "-- round $r"
  run nginx "http://127.0.0.1:$NGINX_PORT/"
  run haproxy "http://127.0.0.1:$HAPROXY_PORT/" "$HAPROXY_PID"
  [ -n "${BASELINE_GATEWAY:-}" ] && run baseline "http://127.0.0.1:$BASE_PORT/" "$BASELINE_PID"
  run gateway "http://127.0.0.1:$GATEWAY_PORT/" "$GATEWAY_PID"
  run gateway-1 "http://127.0.0.1:$GATEWAY1_PORT/" "$GATEWAY1_PID"
done
# Fill the stuck cluster's connection and pending slot, then measure the 503 UO path.
(curl -s -m 600 "http://127.0.0.1:$GATEWAY_PORT/shed" >/dev/null &) ; sleep 0.3
(curl -s -m 600 "http://127.0.0.1:$GATEWAY_PORT/shed" >/dev/null &) ; sleep 0.3
run "shed(UO)" "http://127.0.0.1:$GATEWAY_PORT/shed" "$GATEWAY_PID"
echo "overflow counter: $(curl -s "http://127.0.0.1:$ADMIN_PORT/stats" | grep 'cluster.stuck.upstream_rq_pending_overflow')"
