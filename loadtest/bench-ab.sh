#!/usr/bin/env bash
# Two gateway builds side by side in front of the same nginx: is a change free for plain routes?
#
#   loadtest/bench-ab.sh OLD_BINARY NEW_BINARY [rounds, default 8] [seconds per run, default 10]
#   CLIENT=close loadtest/bench-ab.sh OLD NEW ...   # a connection per request
#
# Both run with two event loops and the same one-route config; the client drives each in turn,
# in A-B then B-A order on alternate rounds so drift hits both alike. Prints each run (req/s and
# the gateway's CPU µs per request) and the averages' ratios, new over old. CLIENT: wrk
# (default: wrk -t1 -c64, keep-alive), close (loadtest -b -c 16 --connection close, a new
# connection per request as siege and health checkers make them; LOADTEST_BIN, default
# .build/release/loadtest), pipe (wrk -t1 -c32 with 16 requests per write), hey (hey -c 32,
# keep-alive from Go's HTTP client; as many requests as 8000 per second of DURATION), h2 (h2load
# -c 4 -m 100 over h2c, both gateways with listener.http2 on).
#   git worktree add /tmp/gw-base <commit> && swift build -c release --product gateway --package-path /tmp/gw-base
#   loadtest/bench-ab.sh /tmp/gw-base/.build/release/gateway .build/release/gateway
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
OLD_BIN=${1:?old gateway binary}
NEW_BIN=${2:?new gateway binary}
ROUNDS=${3:-8}
DURATION=${4:-10}
CLIENT=${CLIENT:-wrk}
LOADTEST=${LOADTEST_BIN:-.build/release/loadtest}
require_tools "apt-get install -y nginx-light wrk" nginx wrk
case $CLIENT in
  wrk|pipe) ;;
  hey) require_tools "apt-get install -y hey" hey ;;
  h2) require_tools "apt-get install -y nghttp2-client" h2load; LISTENER_FIELDS=', "http2": {"enabled": true}' ;;
  close) [ -x "$LOADTEST" ] || { echo "no loadtest at $LOADTEST (swift build -c release --product loadtest)" >&2; exit 1; } ;;
  *) echo "CLIENT must be wrk, close, pipe, hey or h2, not '$CLIENT'" >&2; exit 1 ;;
esac
bench_init
write_pipeline_lua "$WORK/pipeline.lua" 16
NGINX_PORT=18190
start_nginx "$NGINX_PORT"
THREADS=2
start_gateway old "$OLD_BIN" 18191 18192 "$NGINX_PORT" "${LISTENER_FIELDS:-}"; OLD=$PID
start_gateway new "$NEW_BIN" 18193 18194 "$NGINX_PORT" "${LISTENER_FIELDS:-}"; NEW=$PID

run() { # name port pid
  local before out requests rps
  before=$(cpu_ticks "$3")
  case $CLIENT in
    wrk|pipe)
      if [ "$CLIENT" = pipe ]; then
        out=$(wrk -t1 -c32 -d"${DURATION}s" -s "$WORK/pipeline.lua" "http://127.0.0.1:$2/")
      else
        out=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$2/")
      fi
      requests=$(awk '/requests in/ {print $1}' <<<"$out")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out") ;;
    h2)
      out=$(h2load -D "$DURATION" -c 4 -m 100 -t 1 "http://127.0.0.1:$2/")
      requests=$(awk '/^requests:/ {print $8}' <<<"$out")
      rps=$(awk '/^finished in/ {print $4}' <<<"$out") ;;
    hey)
      requests=$(( DURATION * 8000 ))
      out=$(hey -n "$requests" -c 32 "http://127.0.0.1:$2/")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out") ;;
    close)
      out=$("$LOADTEST" -b -c 16 -t "${DURATION}S" --connection close -q --json "http://127.0.0.1:$2/")
      read -r rps requests < <(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["transaction_rate"], d["responses"])' "$out") ;;
  esac
  awk -v name="$1" -v rps="$rps" -v n="$requests" \
    -v t="$(( $(cpu_ticks "$3") - before ))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%-4s %10.0f req/s  cpu %.2f us/req\n", name, rps, t * 1e6 / hz / n}'
}

machine_line
echo "client $CLIENT, ${DURATION}s per run, $ROUNDS rounds, order alternating"
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then run new 18193 "$NEW"; run old 18191 "$OLD"; else run old 18191 "$OLD"; run new 18193 "$NEW"; fi
done | tee "$WORK/runs"
ratio_summary new old "$WORK/runs"
