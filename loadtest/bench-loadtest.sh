#!/usr/bin/env bash
# loadtest vs wrk (keep-alive) and vs siege (connection close) against the same nginx, side by
# side in one run, with each generator's own CPU time per request.
#
#   loadtest/bench-loadtest.sh [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
for tool in nginx wrk siege; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y nginx-light wrk siege" >&2; exit 1; }
done
swift build -c release --product loadtest >/dev/null 2>&1
WORK=$(mktemp -d)
PORT=18190
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$PORT; location / { default_type application/json; return 200 '{"status":"ok","qty":10000}'; } } }
CONF
nginx -p "$WORK" -c nginx.conf
trap 'nginx -p "$WORK" -c nginx.conf -s stop 2>/dev/null; rm -rf "$WORK"' EXIT
URL="http://127.0.0.1:$PORT/"

cpu() { # command... -> prints "rate cpu_us_per_request" using the child's user+sys time
  local t0 t1 out
  out=$( { /usr/bin/time -f "CPU %U %S" "$@" ; } 2>&1 )
  echo "$out"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "--- keep-alive, 64 connections, ${DURATION}s"
W=$(cpu wrk -t1 -c64 -d"${DURATION}s" "$URL")
WR=$(awk '/Requests\/sec/ {print $2}' <<<"$W"); WN=$(awk '/requests in/ {print $1}' <<<"$W")
WC=$(awk '/^CPU/ {print $2 + $3}' <<<"$W")
# One event loop, as wrk -t1 has one thread (the default, one loop per core, is also shown).
L=$(cpu .build/release/loadtest -b -c 64 -t "${DURATION}S" -q --json --threads 1 "$URL")
LR=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].splitlines()[0])["transaction_rate"])' "$L")
LN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].splitlines()[0])["transactions"])' "$L")
LC=$(awk '/^CPU/ {print $2 + $3}' <<<"$L")
printf "wrk -t1 -c64        %10s req/s   CPU %5.2fs = %5.2f us/request\n" "$WR" "$WC" "$(python3 -c "print($WC*1e6/$WN)")"
printf "loadtest -b -c64 --threads 1 %10s req/s   CPU %5.2fs = %5.2f us/request   ratio %.2f\n" "$LR" "$LC" "$(python3 -c "print($LC*1e6/$LN)")" "$(python3 -c "print($LR/$WR)")"
D=$(.build/release/loadtest -b -c 64 -t "${DURATION}S" -q --json "$URL")
DR=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["transaction_rate"])' "$D")
printf "loadtest -b -c64 (loop per core) %10s req/s   ratio %.2f\n" "$DR" "$(python3 -c "print($DR/$WR)")"

echo "--- connection close, 16 users, ${DURATION}s"
S=$(cpu siege -b -c 16 -t "${DURATION}S" -q "$URL" 2>&1 || true)
SR=$(awk -F: '/Transaction rate/ {print $2}' <<<"$S" | awk '{print $1}')
[ -z "$SR" ] && SR=$(grep -o '"transaction_rate":[^,]*' <<<"$S" | cut -d: -f2)
C=$(cpu .build/release/loadtest -b -c 16 -t "${DURATION}S" -q --json --connection close --threads 1 "$URL")
CR=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].splitlines()[0])["transaction_rate"])' "$C")
printf "siege -b -c16 (close)        %10s trans/s\n" "$SR"
printf "loadtest -b -c16 --conn close --threads 1 %10s trans/s   ratio %.2f\n" "$CR" "$(python3 -c "print($CR/float('$SR'))")"
