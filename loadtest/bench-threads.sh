#!/usr/bin/env bash
# One event loop against two: HAProxy with one thread, the gateway with --threads 1 and with
# --threads 2, in front of the same nginx, driven in turn by one client, rounds interleaved.
#
#   flock /tmp/bench.lock loadtest/bench-threads.sh                  # wrk -t1 -c32, 16 pipelined
#   CLIENT=wrk ROUNDS=5 flock /tmp/bench.lock loadtest/bench-threads.sh
#
# Prints per run req/s, the proxy's user and system CPU per request (/proc/<pid>/stat) and its
# context switches per request (voluntary and involuntary, summed over /proc/<pid>/task/*/status):
# how often its threads went to sleep and were woken, which costs kernel time on a machine whose
# cores it shares with the client and nginx.
# Env: GATEWAY_BIN (default .build/release/gateway, built first), CLIENT (pipe: wrk -t1 -c32 with
#      16 requests per write; wrk: wrk -t1 -c64; hey: hey -z -c 32), ROUNDS (3), DURATION (5 s),
#      BASE_PORT (18330; uses BASE_PORT .. BASE_PORT+5).
# Needs nginx, haproxy, wrk (hey for CLIENT=hey): apt-get install -y haproxy nginx-light wrk hey
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
cd "$(dirname "$0")/.."
CLIENT=${CLIENT:-pipe}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
BASE=${BASE_PORT:-18330}
case $CLIENT in
  pipe|wrk) require_tools "apt-get install -y haproxy nginx-light wrk" nginx haproxy wrk curl ;;
  hey) require_tools "apt-get install -y haproxy nginx-light hey" nginx haproxy hey curl ;;
  *) echo "CLIENT must be pipe, wrk or hey, not '$CLIENT'" >&2; exit 1 ;;
esac
gateway_binary

bench_init
write_pipeline_lua "$WORK/pipeline.lua" 16
NGINX_PORT=$BASE
start_nginx "$NGINX_PORT"
HAPROXY_THREADS=1 start_haproxy haproxy "$((BASE + 1))" "$NGINX_PORT" 4000
HAP_PID=$PID
THREADS=1 start_gateway gateway-1 "$GATEWAY" "$((BASE + 2))" "$((BASE + 3))" "$NGINX_PORT"
G1_PID=$PID
THREADS=2 start_gateway gateway-2 "$GATEWAY" "$((BASE + 4))" "$((BASE + 5))" "$NGINX_PORT"
G2_PID=$PID

drive() { # port -> req/s
  case $CLIENT in
    pipe) wrk -t1 -c32 -d"${DURATION}s" -s "$WORK/pipeline.lua" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}' ;;
    wrk) wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}' ;;
    hey) hey -z "${DURATION}s" -c 32 "http://127.0.0.1:$1/" | awk '$1 == "Requests/sec:" {print $2}' ;;
  esac
}
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

machine_line
echo "client $CLIENT, $ROUNDS rounds of ${DURATION}s; HAProxy nbthread 1; gateway $GATEWAY --threads 1 and 2; nginx 1 worker"
HZ=$(getconf CLK_TCK)
for r in $(seq 1 "$ROUNDS"); do
  echo "-- round $r"
  for run in "haproxy $((BASE + 1)) $HAP_PID" "gateway-1 $((BASE + 2)) $G1_PID" "gateway-2 $((BASE + 4)) $G2_PID"; do
    read -r name port pid <<<"$run"
    read -r u0 s0 < <(ticks "$pid"); c0=$(switches "$pid")
    rps=$(drive "$port")
    read -r u1 s1 < <(ticks "$pid"); c1=$(switches "$pid")
    is_num "$rps" || { printf "   %-10s n/a (the client's output could not be read)\n" "$name"; continue; }
    awk -v n="$name" -v r="$rps" -v d="$DURATION" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v c=$((c1 - c0)) -v hz="$HZ" 'BEGIN {
      q = r * d; printf "   %-10s %7.0f req/s   user %5.2f  sys %5.2f  total %5.2f us/req   context switches %.3f per request\n",
        n, r, u / hz / q * 1e6, s / hz / q * 1e6, (u + s) / hz / q * 1e6, c / q }'
  done
done
