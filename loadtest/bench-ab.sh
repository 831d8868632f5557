#!/usr/bin/env bash
# Two gateway builds side by side in front of the same nginx: is a change free for plain routes?
#
#   loadtest/bench-ab.sh OLD_BINARY NEW_BINARY [rounds, default 8] [seconds per run, default 10]
#
# Both run with two event loops and the same one-route config; wrk -t1 -c64 drives each in turn,
# in A-B then B-A order on alternate rounds so drift hits both alike. Prints each run (req/s and
# the gateway's CPU µs per request) and the averages' ratios, new over old.
#   git worktree add /tmp/gw-base <commit> && swift build -c release --product gateway --package-path /tmp/gw-base
#   loadtest/bench-ab.sh /tmp/gw-base/.build/release/gateway .build/release/gateway
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
OLD_BIN=${1:?old gateway binary}
NEW_BIN=${2:?new gateway binary}
ROUNDS=${3:-8}
DURATION=${4:-10}
require_tools "apt-get install -y nginx-light wrk" nginx wrk
bench_init
NGINX_PORT=18190
start_nginx "$NGINX_PORT"
THREADS=2
start_gateway old "$OLD_BIN" 18191 18192 "$NGINX_PORT"; OLD=$PID
start_gateway new "$NEW_BIN" 18193 18194 "$NGINX_PORT"; NEW=$PID

run() { # name port pid
  local before out requests
  before=$(cpu_ticks "$3")
  out=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$2/")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v name="$1" -v rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" -v n="$requests" \
    -v t="$(( $(cpu_ticks "$3") - before ))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%-4s %10.0f req/s  cpu %.2f us/req\n", name, rps, t * 1e6 / hz / n}'
}

machine_line
echo "wrk -t1 -c64 -d${DURATION}s, $ROUNDS rounds, order alternating"
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then run new 18193 "$NEW"; run old 18191 "$OLD"; else run old 18191 "$OLD"; run new 18193 "$NEW"; fi
done | tee "$WORK/runs"
ratio_summary new old "$WORK/runs"
