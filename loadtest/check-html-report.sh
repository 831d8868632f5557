#!/usr/bin/env bash
# Renders loadtest's --html report in headless Chromium (Debian's `chromium`) with the network
# off, checks the charts are in the rendered DOM, and saves a screenshot; the same for the
# --sweep report (screenshot beside the first, -sweep.png).
#
#   loadtest/check-html-report.sh [screenshot.png]
#   LOADTEST=.build/debug/loadtest loadtest/check-html-report.sh   (an existing build, no release build)
set -euo pipefail
cd "$(dirname "$0")/.."
SHOT=${1:-/tmp/loadtest-report.png}
command -v chromium >/dev/null || { echo "missing chromium: apt-get install -y chromium" >&2; exit 1; }
command -v nginx >/dev/null || { echo "missing nginx: apt-get install -y nginx-light" >&2; exit 1; }
if [ -z "${LOADTEST:-}" ]; then
  swift build -c release --product loadtest >/dev/null 2>&1
  LOADTEST=.build/release/loadtest
fi
WORK=$(mktemp -d)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 1024; }
http { access_log off;
  server { listen 127.0.0.1:18290;
    location / { default_type application/json; return 200 '{"status":"ok"}'; }
    location /missing { return 404; } } }
CONF
nginx -p "$WORK" -c nginx.conf
trap 'nginx -p "$WORK" -c nginx.conf -s stop 2>/dev/null; rm -rf "$WORK"' EXIT
printf 'http://127.0.0.1:18290/\nhttp://127.0.0.1:18290/missing\n' > "$WORK/urls.txt"
"$LOADTEST" -c 8 -t 3S -d 0.01 -q -f "$WORK/urls.txt" --html "$WORK/report.html" >/dev/null
if grep -Eq '<(script|link|img)[^>]+(src|href)="https?:' "$WORK/report.html"; then
  echo "FAIL: the report fetches from the network" >&2; exit 1
fi
FLAGS=(--headless --no-sandbox --disable-gpu --proxy-server=127.0.0.1:9 --window-size=1000,1400)
DOM=$(chromium "${FLAGS[@]}" --dump-dom "file://$WORK/report.html" 2>/dev/null)
for needle in '<svg id="latency"' '<svg id="throughput"' 'Transactions:' 'HTTP 404:' '<rect'; do
  grep -q "$needle" <<<"$DOM" || { echo "FAIL: rendered page lacks $needle" >&2; exit 1; }
done
chromium "${FLAGS[@]}" --screenshot="$SHOT" "file://$WORK/report.html" >/dev/null 2>&1
[ -s "$SHOT" ] || { echo "FAIL: no screenshot" >&2; exit 1; }

# The sweep's page: charts against concurrency (no admin here, so no counter chart).
"$LOADTEST" --sweep 1,2,4 -t 1S -d 0.01 -q -f "$WORK/urls.txt" --html "$WORK/sweep.html" >/dev/null
if grep -Eq '<(script|link|img)[^>]+(src|href)="https?:' "$WORK/sweep.html"; then
  echo "FAIL: the sweep report fetches from the network" >&2; exit 1
fi
DOM=$(chromium "${FLAGS[@]}" --dump-dom "file://$WORK/sweep.html" 2>/dev/null)
for needle in '<svg id="rate"' '<svg id="availability"' '<svg id="latency"' '<svg id="status"' 'knee (first step with 503s)' '<polyline'; do
  grep -q "$needle" <<<"$DOM" || { echo "FAIL: rendered sweep page lacks $needle" >&2; exit 1; }
done
SWEEPSHOT="${SHOT%.png}-sweep.png"
chromium "${FLAGS[@]}" --screenshot="$SWEEPSHOT" "file://$WORK/sweep.html" >/dev/null 2>&1
[ -s "$SWEEPSHOT" ] || { echo "FAIL: no sweep screenshot" >&2; exit 1; }
echo "ok: report rendered in headless chromium with both charts; screenshot $SHOT; sweep report $SWEEPSHOT"
