#!/usr/bin/env bash
# TLS termination: the gateway against HAProxy 2.6 with the same certificate in front of the same
# nginx, side by side in one run.
#
#   flock /tmp/bench.lock loadtest/bench-tls.sh
#   ROUNDS=5 DURATION=10 flock /tmp/bench.lock loadtest/bench-tls.sh
#   ROUNDS=1 DURATION=2 flock /tmp/bench.lock loadtest/bench-tls.sh      # smoke test
#
# A CA and a certificate for bench.example (KEY=ec: ECDSA P-256, the default; KEY=rsa: RSA 2048)
# are made with openssl. nginx (1 worker) serves a 27-byte JSON over plaintext. HAProxy (nbthread
# 2, `bind ... ssl crt ... alpn http/1.1`, http-reuse always) and the gateway (2 event loops,
# --access-log off, a Gateway server with protocol HTTPS) terminate TLS and proxy to it with
# keep-alive upstream. Both offer ALPN h2 and http/1.1 (HAProxy: `alpn h2,http/1.1`; the gateway
# offers h2 on every HTTPS server). Rows, each run against HAProxy and the gateway in turn (which
# goes first alternates by round), rounds interleaved so machine noise hits both alike:
#   https-ka    wrk -t1 -c64 -d<DURATION>s https://...          keep-alive: one handshake per
#                                                               connection, then requests
#                                                               (wrk offers no ALPN: HTTP/1.1)
#   handshakes  wrk -t1 -c16 -d<DURATION>s, `Connection: close` (a Lua script): a full TLS
#               handshake per request (wrk resumes no session), so req/s = handshakes/s
#   h2-100      h2load -c4 -m100 -D<DURATION> https://...       h2 over TLS (ALPN), 100
#                                                               concurrent streams per connection
# Printed per round and row: req/s through HAProxy and through the gateway, the proxy's CPU per
# request (user + sys from /proc/<pid>/stat, microseconds), non-2xx or failed responses, and
# gateway/HAProxy. At the end: the mean ratio per row. The negotiated protocol and cipher of
# each proxy are printed first (openssl s_client), so both are known to do the same work.
#
# Env: ROUNDS (3), DURATION (seconds per run, 5), KEY (ec), GATEWAY_BIN (default: this tree's
#      release build, built first), GATEWAY_THREADS (2), BASE_PORT (18390; uses BASE_PORT ..
#      BASE_PORT+4).
# Needs nginx, haproxy, wrk, h2load, openssl and curl:
#   apt-get install -y haproxy nginx-light wrk nghttp2-client openssl curl
# The machine is shared: wrap the run in `flock /tmp/bench.lock` so benchmarks do not overlap.
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
KEY=${KEY:-ec}
THREADS=${GATEWAY_THREADS:-2}
BASE=${BASE_PORT:-18390}

require_tools "apt-get install -y haproxy nginx-light wrk nghttp2-client openssl curl" nginx haproxy wrk h2load openssl curl

gateway_binary

NGINX_PORT=$BASE HAP_PORT=$((BASE + 1)) GW_PORT=$((BASE + 2)) GW_ADMIN=$((BASE + 3)) GW_TLS_PORT=$((BASE + 4))

bench_init
start_nginx "$NGINX_PORT"

# The certificate both proxies show.
(
  cd "$WORK"
  case "$KEY" in
    ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
    *) echo "KEY is ec or rsa" >&2; exit 1 ;;
  esac
  openssl req -x509 "${newkey[@]}" -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
  openssl req "${newkey[@]}" -nodes -keyout server.key -out server.csr -subj "/CN=bench.example" 2>/dev/null
  printf 'subjectAltName=DNS:bench.example,IP:127.0.0.1\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
    -extfile server.ext 2>/dev/null
  cat server.pem server.key > haproxy.pem
)

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 2
  maxconn 4000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HAP_PORT ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  http-reuse always
  server nginx 127.0.0.1:$NGINX_PORT
CONF
haproxy -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!
pids+=("$HAP_PID")

cat > "$WORK/gateway.json" <<CONF
{"listener": {"address": "127.0.0.1", "port": $GW_PORT}, "admin": {"address": "127.0.0.1", "port": $GW_ADMIN},
 "serviceEntries": [{"host": "nginx", "endpoints": [{"address": "127.0.0.1", "port": $NGINX_PORT}]}],
 "virtualServices": [{"http": [{"name": "all", "route": [{"destination": {"host": "nginx"}}]}]}],
 "gateways": [{"servers": [{"port": {"number": $GW_TLS_PORT, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
   "tls": {"mode": "SIMPLE", "serverCertificate": "$WORK/server.pem", "privateKey": "$WORK/server.key"}}]}]}
CONF
"$GATEWAY" --config "$WORK/gateway.json" --access-log off --threads "$THREADS" >/dev/null 2>"$WORK/gateway.err" &
GW_PID=$!
pids+=("$GW_PID")

wait_https() { # port
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -m 1 --cacert "$WORK/ca.pem" --resolve "bench.example:$1:127.0.0.1" "https://bench.example:$1/" && return 0
    sleep 0.1
  done
  echo "nothing answers https on port $1" >&2; exit 1
}
wait_https "$HAP_PORT"
wait_https "$GW_TLS_PORT"

for port in "$HAP_PORT" "$GW_TLS_PORT"; do
  name=$([ "$port" = "$HAP_PORT" ] && echo haproxy || echo gateway)
  for alpn in http/1.1 h2,http/1.1; do
    printf '%-8s %s\n' "$name" "$(openssl s_client -connect "127.0.0.1:$port" -servername bench.example -alpn "$alpn" </dev/null 2>/dev/null \
      | awk '/^New, / {print $2, $NF} /ALPN protocol/ {print "ALPN", $3}' | tr '\n' ' ')"
  done
done

cat > "$WORK/close.lua" <<LUA
-- Every request asks the proxy to close: the next one opens a new connection and handshake.
wrk.headers["Connection"] = "close"
LUA

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
row() { # name pid url wrk-args... -> "req/s cpu-us-per-request errors"
  local pid=$2 url=$3 out before after reqs rps errs
  shift 3
  before=$(cpu_ticks "$pid")
  out=$(wrk "$@" -d"${DURATION}s" "$url" 2>&1) || true
  after=$(cpu_ticks "$pid")
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errs=$(awk '/Non-2xx/ {s += $NF} /Socket errors/ {for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i}
    END {print s + 0}' <<<"$out")
  awk -v r="${rps:-0}" -v n="${reqs:-0}" -v t=$((after - before)) -v hz="$TICK" -v e="$errs" \
    'BEGIN {printf "%s %s %s", r, (n > 0 ? sprintf("%.1f", t / hz * 1e6 / n) : "n/a"), e}'
}

# h2load over TLS (ALPN h2): "req/s cpu-us-per-request errors", as `row`.
h2row() { # name pid url
  local out before after n ok
  before=$(cpu_ticks "$2")
  out=$(h2load -D "$DURATION" -c 4 -m 100 -t 1 "$3" 2>&1) || true
  after=$(cpu_ticks "$2")
  grep -q 'Application protocol: h2' <<<"$out" || { echo "$1: h2 was not negotiated" >&2; echo "0 n/a 1"; return; }
  n=$(awk '/^requests:/ {print $8}' <<<"$out")
  ok=$(awk '/^status codes:/ {print $3}' <<<"$out")
  awk -v r="$(awk '/^finished in/ {print $4}' <<<"$out")" -v n="${n:-0}" -v ok="${ok:-0}" -v t=$((after - before)) -v hz="$TICK" \
    'BEGIN {printf "%.0f %s %d", r, (n > 0 ? sprintf("%.1f", t / hz * 1e6 / n) : "n/a"), n - ok}'
}

declare -A ratios
rows=(https-ka handshakes h2-100)
printf '\n%-6s %-11s %12s %8s %6s %12s %8s %6s %8s\n' round row haproxy_rps us/req errs gateway_rps us/req errs gw/hap
for round in $(seq 1 "$ROUNDS"); do
  for r in "${rows[@]}"; do
    case "$r" in
      https-ka) args=(-t1 -c64) ;;
      handshakes) args=(-t1 -c16 -s "$WORK/close.lua") ;;
    esac
    if [ "$r" = h2-100 ]; then
      if (( round % 2 )); then
        read -r hr hc he <<<"$(h2row haproxy "$HAP_PID" "https://127.0.0.1:$HAP_PORT/")"
        read -r gr gc ge <<<"$(h2row gateway "$GW_PID" "https://127.0.0.1:$GW_TLS_PORT/")"
      else
        read -r gr gc ge <<<"$(h2row gateway "$GW_PID" "https://127.0.0.1:$GW_TLS_PORT/")"
        read -r hr hc he <<<"$(h2row haproxy "$HAP_PID" "https://127.0.0.1:$HAP_PORT/")"
      fi
    elif (( round % 2 )); then
      read -r hr hc he <<<"$(row haproxy "$HAP_PID" "https://127.0.0.1:$HAP_PORT/" "${args[@]}")"
      read -r gr gc ge <<<"$(row gateway "$GW_PID" "https://127.0.0.1:$GW_TLS_PORT/" "${args[@]}")"
    else
      read -r gr gc ge <<<"$(row gateway "$GW_PID" "https://127.0.0.1:$GW_TLS_PORT/" "${args[@]}")"
      read -r hr hc he <<<"$(row haproxy "$HAP_PID" "https://127.0.0.1:$HAP_PORT/" "${args[@]}")"
    fi
    ratio=$(awk -v g="$gr" -v h="$hr" 'BEGIN {if (h > 0) printf "%.3f", g / h; else print "n/a"}')
    ratios[$r]="${ratios[$r]:-} $ratio"
    printf '%-6s %-11s %12s %8s %6s %12s %8s %6s %8s\n' "$round" "$r" "$hr" "$hc" "$he" "$gr" "$gc" "$ge" "$ratio"
  done
done
echo
for r in "${rows[@]}"; do
  # shellcheck disable=SC2086
  printf 'mean gateway/HAProxy %-11s %s\n' "$r" "$(printf '%s\n' ${ratios[$r]} | awk '$1 ~ /^[0-9.]+$/ {s += $1; n++} END {if (n) printf "%.3f", s / n; else print "n/a"}')"
done
