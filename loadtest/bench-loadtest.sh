#!/usr/bin/env bash
# loadtest vs wrk (keep-alive) and vs siege (connection close) against the same nginx, side by
# side in one run, with each generator's own CPU time (user + sys) per request.
#
#   loadtest/bench-loadtest.sh [seconds, default 10] [rounds, default 1]
#
# With several rounds, wrk and loadtest alternate round by round (keep-alive) and the means of the
# rates and their ratio come last: on a shared machine one pair of runs says little.
#
# The machine is shared: wrap the run in `flock /tmp/bench.lock` so benchmarks do not overlap.
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-1}
require_tools "apt-get install -y nginx-light wrk siege" nginx wrk siege
swift build -c release --product loadtest >/dev/null 2>&1
LOADTEST=.build/release/loadtest
bench_init
PORT=18190
start_nginx "$PORT"
URL="http://127.0.0.1:$PORT/"
# nginx's one worker: how busy the server is shows whether it or the generator sets the rate.
WORKER=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
worker_ticks() { awk '{print $14 + $15}' "/proc/$WORKER/stat"; }

# timed command... -> its output, then "CPU user sys" of the command (children included)
timed() { { /usr/bin/time -f "CPU %U %S" "$@"; } 2>&1; }
cpu_of() { awk '/^CPU/ {print $2 + $3}' <<<"$1"; }
# loadtest's and siege's JSON: one field
field() { python3 -c 'import re,sys; print(re.search(r"\"%s\":\s*([0-9.]+)" % sys.argv[2], sys.argv[1]).group(1))' "$1" "$2"; }
us() { python3 -c "print('%.2f' % ($1 * 1e6 / $2))"; }
ratio() { python3 -c "print('%.2f' % (float('$1') / float('$2')))"; }
# nginx worker ticks before and after a run -> percent of one core over the run
busy() { python3 -c "print('%.0f' % (($2 - $1) * 100 / $(getconf CLK_TCK) / $DURATION))"; }
row() { printf "%-48s %10s %-8s CPU %5.2fs = %6.2f us/request%s\n" "$@"; }

machine_line
echo "--- keep-alive, 64 connections, ${DURATION}s, $ROUNDS round(s)"
RATIOS=()
BUSY_W=() BUSY_L=()
for round in $(seq "$ROUNDS"); do
  T0=$(worker_ticks)
  W=$(timed wrk -t1 -c64 -d"${DURATION}s" "$URL")
  WR=$(awk '/Requests\/sec/ {print $2}' <<<"$W"); WN=$(awk '/requests in/ {print $1}' <<<"$W"); WC=$(cpu_of "$W")
  T1=$(worker_ticks)
  row "wrk -t1 -c64" "$WR" "req/s" "$WC" "$(us "$WC" "$WN")" "   nginx busy $(busy "$T0" "$T1")%"
  BUSY_W+=("$(busy "$T0" "$T1")")
  # The default: one event loop on 2 cores (half the cores with keep-alive), as wrk -t1 has one thread.
  L=$(timed "$LOADTEST" -b -c 64 -t "${DURATION}S" -q --json "$URL")
  T2=$(worker_ticks)
  LR=$(field "$L" transaction_rate); LN=$(field "$L" transactions); LC=$(cpu_of "$L")
  row "loadtest -b -c64 (default loops)" "$LR" "req/s" "$LC" "$(us "$LC" "$LN")" \
    "   nginx busy $(busy "$T1" "$T2")%, rate $(ratio "$LR" "$WR")x wrk, CPU/request $(ratio "$(us "$LC" "$LN")" "$(us "$WC" "$WN")")x wrk"
  BUSY_L+=("$(busy "$T1" "$T2")")
  RATIOS+=("$(ratio "$LR" "$WR")")
done
if [ "$ROUNDS" -gt 1 ]; then
  python3 -c "import sys; r=[float(x) for x in sys.argv[1:]]; print('loadtest/wrk per round: %s; mean %.2fx' % (' '.join(sys.argv[1:]), sum(r)/len(r)))" "${RATIOS[@]}"
  echo "nginx busy with wrk: ${BUSY_W[*]} %; with loadtest: ${BUSY_L[*]} %"
fi
D=$(timed "$LOADTEST" -b -c 64 -t "${DURATION}S" -q --json --threads "$(nproc)" "$URL")
DR=$(field "$D" transaction_rate); DN=$(field "$D" transactions); DC=$(cpu_of "$D")
row "loadtest -b -c64 --threads $(nproc) (loop per core)" "$DR" "req/s" "$DC" "$(us "$DC" "$DN")" "   rate $(ratio "$DR" "$WR")x wrk"

echo "--- connection close, 16 users, ${DURATION}s"
S=$(timed siege -b -c 16 -t "${DURATION}S" -q "$URL" || true)
SR=$(field "$S" transaction_rate); SN=$(field "$S" transactions); SC=$(cpu_of "$S")
row "siege -b -c16 (close)" "$SR" "trans/s" "$SC" "$(us "$SC" "$SN")" ""
# The default with --connection close: one event loop per core.
C=$(timed "$LOADTEST" -b -c 16 -t "${DURATION}S" -q --json --connection close "$URL")
CR=$(field "$C" transaction_rate); CN=$(field "$C" transactions); CC=$(cpu_of "$C")
row "loadtest -b -c16 --connection close (default)" "$CR" "trans/s" "$CC" "$(us "$CC" "$CN")" "   rate $(ratio "$CR" "$SR")x siege"
C1=$(timed "$LOADTEST" -b -c 16 -t "${DURATION}S" -q --json --connection close --threads 1 "$URL")
C1R=$(field "$C1" transaction_rate); C1N=$(field "$C1" transactions); C1C=$(cpu_of "$C1")
row "loadtest -b -c16 --connection close --threads 1" "$C1R" "trans/s" "$C1C" "$(us "$C1C" "$C1N")" "   rate $(ratio "$C1R" "$SR")x siege"
