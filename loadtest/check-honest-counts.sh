#!/usr/bin/env bash
# loadtest's counts against what nginx logged: `-c4 -r50` must be 200 transactions and 200
# access-log lines; `-c2 -r5 'URL POST {json}'` must be logged as 10 POSTs carrying that body.
#
#   loadtest/check-honest-counts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null || { echo "missing nginx: apt-get install -y nginx-light" >&2; exit 1; }
# LOADTEST_BIN picks an already built binary (CI uses the debug build it just made).
LOADTEST=${LOADTEST_BIN:-}
if [ -z "$LOADTEST" ]; then swift build -c release --product loadtest >/dev/null 2>&1; LOADTEST=.build/release/loadtest; fi
WORK=$(mktemp -d)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 1024; }
http {
  log_format body '\$request_method \$request_uri \$status "\$request_body"';
  access_log $WORK/access.log body;
  client_body_buffer_size 16k;
  server { listen 127.0.0.1:18390;
    location / { default_type application/json; return 200 '{"status":"ok"}'; }
    location /orders { proxy_pass http://127.0.0.1:18390/ok; }
    location /ok { return 200 '{"created":true}'; } } }
CONF
nginx -p "$WORK" -c nginx.conf
trap 'nginx -p "$WORK" -c nginx.conf -s stop 2>/dev/null; rm -rf "$WORK"' EXIT

out=$("$LOADTEST" -c4 -r50 http://127.0.0.1:18390/)
tx=$(awk '/^Transactions:/ {print $2}' <<<"$out")
sleep 0.5
logged=$(grep -c '^GET / ' "$WORK/access.log" || true)
echo "loadtest -c4 -r50: Transactions $tx, nginx logged $logged GET requests"
[ "$tx" = 200 ] && [ "$logged" = 200 ] || { echo "FAIL: counts differ" >&2; exit 1; }

out=$("$LOADTEST" -c2 -r5 'http://127.0.0.1:18390/orders POST {"orderId":1111,"productId":1111,"qty":10}')
tx=$(awk '/^Transactions:/ {print $2}' <<<"$out")
sleep 0.5
posts=$(grep -c '^POST /orders 200 "{\\x22orderId\\x22:1111,\\x22productId\\x22:1111,\\x22qty\\x22:10}"' "$WORK/access.log" || true)
echo "loadtest -c2 -r5 'URL POST {json}': Transactions $tx, nginx logged $posts POSTs with the JSON body"
[ "$tx" = 10 ] && [ "$posts" = 10 ] || { echo "FAIL: POST counts differ"; tail -3 "$WORK/access.log"; exit 1; } >&2
echo "ok: counts equal what nginx logged"
