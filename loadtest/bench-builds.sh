#!/usr/bin/env bash
# Several gateway builds side by side in front of one nginx: where in the history did the
# keep-alive cost per request move?
#
#   loadtest/bench-builds.sh BINARY...            # e.g. builds of successive commits
#   ROUNDS=4 DURATION=4 flock /tmp/bench.lock loadtest/bench-builds.sh /tmp/builds/*
#
# Every build runs with two event loops, --access-log off and the same one-route config; wrk
# -t1 -c64 drives each in turn, the order rotating by one build per round so drift hits all alike.
# Prints each run (req/s, the gateway's CPU µs per request from /proc/<pid>/stat) and the mean
# of each build. To make the builds:
#   git worktree add /tmp/gw-old <commit> && swift build -c release --product gateway --package-path /tmp/gw-old
# Env: ROUNDS (3), DURATION (seconds per run, 4), BASE_PORT (18490; uses BASE_PORT .. +2N).
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
BASE=${BASE_PORT:-18490}
THREADS=2
require_tools "apt-get install -y nginx-light wrk" nginx wrk
bins=("$@")
for bin in "${bins[@]}"; do [ -x "$bin" ] || { echo "no executable at $bin" >&2; exit 1; }; done
bench_init
start_nginx "$BASE"
declare -a PIDS PORTS SUMR SUMC
for i in "${!bins[@]}"; do
  PORTS[$i]=$((BASE + 1 + 2 * i))
  start_gateway "g$i" "${bins[$i]}" "${PORTS[$i]}" $((BASE + 2 + 2 * i)) "$BASE"
  PIDS[$i]=$PID SUMR[$i]=0 SUMC[$i]=0
done
echo "$(machine_line); wrk -t1 -c64 -d${DURATION}s, $ROUNDS rounds"
n=${#bins[@]}
for r in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    i=$(( (k + r) % n ))
    t0=$(cpu_ticks "${PIDS[$i]}")
    out=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:${PORTS[$i]}/")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    cpu=$(awk -v t="$(( $(cpu_ticks "${PIDS[$i]}") - t0 ))" -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
    printf "round %d  %-40s %7s req/s  %6s us/req\n" "$r" "${bins[$i]}" "$rps" "$cpu"
    SUMR[$i]=$(awk -v a="${SUMR[$i]}" -v b="$rps" 'BEGIN {print a + b}')
    SUMC[$i]=$(awk -v a="${SUMC[$i]}" -v b="$cpu" 'BEGIN {print a + b}')
  done
done
echo "mean of $ROUNDS rounds:"
for i in "${!bins[@]}"; do
  printf "  %-40s %7.0f req/s  %6.2f us/req\n" "${bins[$i]}" \
    "$(awk -v s="${SUMR[$i]}" -v n="$ROUNDS" 'BEGIN {print s / n}')" "$(awk -v s="${SUMC[$i]}" -v n="$ROUNDS" 'BEGIN {print s / n}')"
done
