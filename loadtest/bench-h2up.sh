#!/usr/bin/env bash
# HTTP/2 to the upstream side by side: wrk's HTTP/1.1 keep-alive clients -> the gateway
# (DestinationRule h2UpgradePolicy: UPGRADE) or HAProxy 2.6 (`server ... proto h2`) -> one nginx
# speaking h2c (`listen ... http2`), so every request is a stream multiplexed over the proxy's
# few upstream connections.
#
#   [BASE=27690] loadtest/bench-h2up.sh [gateway binary, default .build/release/gateway] [rounds, default 6] [seconds per run, default 10]
#
# wrk -c CONNS (default 64) drives each in turn, A-B then B-A on alternate rounds so drift hits
# both alike. Both get two threads. Prints each run (req/s, p99, the proxy's CPU µs per request,
# the upstream connections nginx accepted during the run) and the averages' ratio, gateway over HAProxy.
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
GATEWAY_BIN=${1:-.build/release/gateway}
ROUNDS=${2:-6}
DURATION=${3:-10}
CONNS=${CONNS:-64}
require_tools "apt-get install -y nginx-light haproxy wrk curl" nginx haproxy wrk curl
bench_init
BASE=${BASE:-27690}
NGINX_PORT=$BASE
# The h2c listener, and a plain one for nginx's own counts (stub_status).
start_nginx $((BASE + 4)) "$NGINX_STATUS_LOCATION
  }
  server {
    listen 127.0.0.1:$NGINX_PORT http2;
    location / { default_type application/json; return 200 '{\"status\":\"ok\",\"qty\":10000}'; }"
THREADS=2
cat > "$WORK/gateway.json" <<CONF
{"listener": {"address": "127.0.0.1", "port": $((BASE + 1))}, "admin": {"address": "127.0.0.1", "port": $((BASE + 2))},
 "serviceEntries": [{"host": "nginx", "endpoints": [{"address": "127.0.0.1", "port": $NGINX_PORT}]}],
 "destinationRules": [{"host": "nginx", "trafficPolicy": {"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}}}],
 "virtualServices": [{"http": [{"name": "all", "route": [{"destination": {"host": "nginx"}}]}]}]}
CONF
"$GATEWAY_BIN" --config "$WORK/gateway.json" --access-log off --threads "$THREADS" >/dev/null 2>"$WORK/gateway.err" &
GW=$!
pids+=("$GW")
wait_http $((BASE + 1)) || { cat "$WORK/gateway.err" >&2; exit 1; }
haproxy_cfg $((BASE + 3)) "$NGINX_PORT" 4096 "$(no_strict_limits 4096 "$(ulimit -n)")" | sed 's/^  server nginx \(.*\)$/  server nginx \1 proto h2/' > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HA=$!
pids+=("$HA")
wait_http $((BASE + 3))
for port in $((BASE + 1)) $((BASE + 3)); do
  [ "$(curl -s -m 2 "http://127.0.0.1:$port/")" = '{"status":"ok","qty":10000}' ] || { echo "no answer through $port" >&2; exit 1; }
done

run() { # name port pid
  local before accepts out
  before=$(cpu_ticks "$3")
  accepts=$(nginx_accepts $((BASE + 4)))
  out=$(wrk -t 2 -c "$CONNS" -d "${DURATION}s" --latency "http://127.0.0.1:$2/")
  awk -v name="$1" -v rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")" \
    -v n="$(awk '/requests in/ {print $1}' <<<"$out")" -v p99="$(awk '$1 == "99%" {print $2}' <<<"$out")" \
    -v errs="$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")" \
    -v t="$(( $(cpu_ticks "$3") - before ))" -v hz="$(getconf CLK_TCK)" \
    -v cx="$(( $(nginx_accepts $((BASE + 4))) - accepts - 1 ))" \
    'BEGIN {printf "%-8s %10.0f req/s  cpu %.2f us/req  p99 %8s  new upstream cx %d %s\n", name, rps, t * 1e6 / hz / n, p99, cx, errs}'
}

machine_line
echo "wrk -c $CONNS -d $DURATION (HTTP/1.1) -> proxy -> nginx over h2c, $ROUNDS rounds, order alternating; $(haproxy -v | head -1)"
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then run gateway $((BASE + 1)) "$GW"; run haproxy $((BASE + 3)) "$HA"; else run haproxy $((BASE + 3)) "$HA"; run gateway $((BASE + 1)) "$GW"; fi
done | tee "$WORK/runs"
ratio_summary gateway haproxy "$WORK/runs"
