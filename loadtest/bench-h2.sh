#!/usr/bin/env bash
# HTTP/2 with prior knowledge (h2c) side by side: the gateway (listener.http2) and HAProxy 2.6
# (`bind ... proto h2`), both before the same nginx over HTTP/1.1 keep-alive.
#
#   loadtest/bench-h2.sh [gateway binary, default .build/release/gateway] [rounds, default 6] [seconds per run, default 10]
#
# h2load -c CONNS -m 100 (100 concurrent streams per connection) drives each in turn, in A-B then
# B-A order on alternate rounds so drift hits both alike. Both get two threads. Prints each run
# (req/s, the proxy's CPU µs per request) and the averages' ratio, gateway over HAProxy.
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
GATEWAY_BIN=${1:-.build/release/gateway}
ROUNDS=${2:-6}
DURATION=${3:-10}
CONNS=${CONNS:-4}
require_tools "apt-get install -y nginx-light haproxy nghttp2-client curl" nginx haproxy h2load curl
bench_init
NGINX_PORT=18290
start_nginx "$NGINX_PORT"
THREADS=2
start_gateway gateway "$GATEWAY_BIN" 18291 18292 "$NGINX_PORT" ', "http2": {"enabled": true}'; GW=$PID
# HAProxy's bench config with an h2c-only bind: it answers HTTP/2 with prior knowledge alone.
haproxy_cfg 18293 "$NGINX_PORT" 1000 "$(no_strict_limits 1000 "$(ulimit -n)")" | sed 's/^  bind \(.*\)$/  bind \1 proto h2/' > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HA=$!
pids+=("$HA")
for _ in $(seq 1 100); do
  curl -s -o /dev/null -m 1 --http2-prior-knowledge "http://127.0.0.1:18293/" && break
  sleep 0.1
done
kill -0 "$HA" 2>/dev/null || { echo "haproxy did not start:" >&2; cat "$WORK/haproxy.log" >&2; exit 1; }

run() { # name port pid
  local before out done_
  before=$(cpu_ticks "$3")
  out=$(h2load -D "$DURATION" -c "$CONNS" -m 100 -t 1 "http://127.0.0.1:$2/")
  done_=$(awk '/^requests:/ {print $8}' <<<"$out")
  awk -v name="$1" -v rps="$(awk '/^finished in/ {print $4}' <<<"$out")" -v n="$done_" \
    -v ok="$(awk '/^status codes:/ {print $3}' <<<"$out")" \
    -v t="$(( $(cpu_ticks "$3") - before ))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%-8s %10.0f req/s  cpu %.2f us/req  2xx %d of %d\n", name, rps, t * 1e6 / hz / n, ok, n}'
}

machine_line
echo "h2load -c $CONNS -m 100 -D $DURATION over h2c, $ROUNDS rounds, order alternating; $(haproxy -v | head -1)"
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then run gateway 18291 "$GW"; run haproxy 18293 "$HA"; else run haproxy 18293 "$HA"; run gateway 18291 "$GW"; fi
done | tee "$WORK/runs"
ratio_summary gateway haproxy "$WORK/runs"
