#!/usr/bin/env bash
# The listener limits, measured side by side with HAProxy 2.6 in front of the same nginx.
#
#   loadtest/bench-hardening.sh [rounds, default 3] [seconds per wrk run, default 5]
#
# Part 1, held partial heads: loadtest/hold-partial-heads.py opens HELD (10000) connections to a
#   proxy and sends on each an unfinished request head, then holds them. Measured per proxy: its
#   RSS (VmRSS) before and while holding (KiB per held connection), and wrk -t1 -c8 latency
#   percentiles of normal requests with and without the held connections. The header timeouts
#   are raised for this (gateway requestHeadersTimeout, HAProxy timeout http-request and timeout
#   client) so the heads outlive the measurement. HAProxy runs twice: as configured, and with
#   tune.pool-high-fd-ratio raised (past 25% of its descriptors in use it stops keeping idle
#   server connections, so with the heads held it connects to nginx once per request). Then a
#   fresh gateway and HAProxy with the 10s header timeout: how many of the held connections are
#   left 12 s after the last head was sent, what they were answered and after how long.
# Part 2, throughput before and after the limits: the gateway of bb6084d (OLD_GATEWAY) and the
#   one of this tree (NEW_GATEWAY), both release builds with the same plain config, plus HAProxy
#   and nginx direct as anchors; wrk -t1 -c64, rounds interleaved as in bench-gateway.sh.
#
# Env: OLD_GATEWAY  (default /tmp/gw-old/.build/release/gateway), built with
#        git worktree add /tmp/gw-old bb6084d
#        swift build -c release --product gateway --package-path /tmp/gw-old
#      NEW_GATEWAY  (default .build/release/gateway of this tree, built when not given)
#      HELD (10000), GATEWAY_THREADS (2, as HAProxy's nbthread 2), BASE_PORT (18190).
# Needs nginx, haproxy, wrk, ss, nstat and python3: apt-get install -y haproxy nginx-light wrk
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-5}
HELD=${HELD:-10000}
THREADS=${GATEWAY_THREADS:-2}
BASE=${BASE_PORT:-18190}
require_tools "apt-get install -y haproxy nginx-light wrk" nginx haproxy wrk ss nstat python3 curl
OLD_GATEWAY=${OLD_GATEWAY:-/tmp/gw-old/.build/release/gateway}
if [ -z "${NEW_GATEWAY:-}" ]; then
  swift build -c release --product gateway >/dev/null 2>&1
  NEW_GATEWAY=.build/release/gateway
fi
for bin in "$OLD_GATEWAY" "$NEW_GATEWAY"; do
  [ -x "$bin" ] || { echo "no gateway binary at $bin (see the build lines at the top of $0)" >&2; exit 1; }
done

NGINX_PORT=$BASE
GW_HOLD_PORT=$((BASE + 1)) HAP_HOLD_PORT=$((BASE + 2)) GW_T10_PORT=$((BASE + 3)) HAP_T10_PORT=$((BASE + 4))
OLD_PORT=$((BASE + 5)) NEW_PORT=$((BASE + 6)) HAP_PORT=$((BASE + 7))
ADMIN_PORT=$((BASE + 10))  # one per gateway: ADMIN_PORT + n

# The held heads must outlive the holding runs: connecting, ROUNDS wrk runs and the samples.
HOLD_TIMEOUT=$(( ROUNDS * (DURATION + 2) + 30 ))
[ "$HOLD_TIMEOUT" -lt 60 ] && HOLD_TIMEOUT=60
# HAProxy's maxconn counts client connections: the held ones, wrk's and a margin.
HAP_MAXCONN=$(( HELD + 100 ))
FD_LIMIT=$(ulimit -n)
FD_HARD=$(ulimit -Hn)

bench_init
start_nginx "$NGINX_PORT" "$NGINX_STATUS_LOCATION"

start_haproxy_t() { # name port maxconn http-request-timeout client-timeout [global lines] -> PID
  start_haproxy "$1" "$2" "$NGINX_PORT" "$3" "$(no_strict_limits "$3" "$FD_HARD")
${6:-}" "  timeout http-request $4" "$5"
}
start_gateway_on() { # name binary port admin-port extra-listener-fields -> PID
  start_gateway "$1" "$2" "$3" "$4" "$NGINX_PORT" "$5"
}

listen_overflows() { nstat -asz TcpExtListenOverflows | awk '$1 == "TcpExtListenOverflows" {print $2}'; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
established() { ss -tnH state established "( sport = :$1 )" | wc -l; }
quiet_cpu() { # pid: its CPU over 3 s without requests, in % of one core
  local t0; t0=$(cpu_ticks "$1"); sleep 3
  awk -v t="$(( $(cpu_ticks "$1") - t0 ))" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f%%", t * 100 / hz / 3}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.0f", s / NR}'; }

# wrk: name url connections [pid] -> prints one line; sets RPS P50 P99 (ms)
run() {
  local before=0 out requests non2xx errors cpu=""
  [ -n "${4:-}" ] && before=$(cpu_ticks "$4")
  out=$(wrk -t1 -c"$3" -d"${DURATION}s" --latency "$2")
  RPS=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  P50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  P99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  errors=$(awk '/Socket errors/ {for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  if [ -n "${4:-}" ]; then
    cpu=$(awk -v t="$(( $(cpu_ticks "$4") - before ))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
      'BEGIN {printf "cpu %.2f us/req", t * 1e6 / hz / n}')
  fi
  printf "%-24s %8s req/s   p50 %6s ms  p99 %6s ms  non-2xx %-4s errors %-4s %s\n" \
    "$1" "$RPS" "$P50" "$P99" "${non2xx:-0}" "${errors:-0}" "$cpu"
}

# Starts the holder against a port and waits until every connection was tried and the proxy
# has taken them (its descriptors grew by the number held). Sets HOLDER, HOLD_STATUS.
hold() { # name port proxy-pid
  local fd0 status ov0
  fd0=$(fd_count "$3")
  ov0=$(listen_overflows)
  HOLD_STATUS="$WORK/$1.hold"
  start_holder "$1" hold-partial-heads.py "$2"
  HELD_AT=$(date +%s.%N)
  status=$(head -n1 "$WORK/$1.hold.out")
  # A SYN dropped on a full accept queue is sent again after 1 s: it shows in connect_seconds.
  OVERFLOWS=$(( $(listen_overflows) - ov0 ))
  for _ in $(seq 1 300); do
    [ $(( $(fd_count "$3") - fd0 )) -ge "$(field "$status" held)" ] && break
    sleep 0.1
  done
  sleep 1
}
release() { # waits for the proxy to see the held connections go
  stop "$HOLDER"
  for _ in $(seq 1 100); do [ "$(established "$1")" -eq 0 ] && break; sleep 0.1; done
}

declare -A T
hold_phase() { # name port pid: latency without and with HELD held heads, RSS before and while
  local name=$1 port=$2 pid=$3 r p50s=() p99s=() rps=() fd0 st
  wrk -t1 -c8 -d1s "http://127.0.0.1:$port/" >/dev/null  # warm-up: upstream connections, buffers
  T[$name,quiet0]=$(quiet_cpu "$pid")
  local a0 a1; a0=$(nginx_accepts "$NGINX_PORT")
  for r in $(seq 1 "$ROUNDS"); do
    run "$name, none held" "http://127.0.0.1:$port/" 8 "$pid"
    p50s+=("$P50"); p99s+=("$P99"); rps+=("$RPS")
  done
  a1=$(nginx_accepts "$NGINX_PORT")
  T[$name,up0]=$(( a1 - a0 - 1 ))
  T[$name,idle]="$(median "${p50s[@]}") / $(median "${p99s[@]}") ms ($(mean "${rps[@]}") req/s)"
  local rss0 rss1 rss2 est
  rss0=$(rss_kib "$pid"); fd0=$(fd_count "$pid")
  hold "$name" "$port" "$pid"
  rss1=$(rss_kib "$pid"); est=$(established "$port")
  echo "$name: holder $(head -n1 "$WORK/$name.hold.out"); listen queue overflows (whole machine) $OVERFLOWS"
  echo "$name: descriptors $fd0 -> $(fd_count "$pid"), established on :$port $est, RSS $rss0 -> $rss1 KiB"
  T[$name,quiet1]=$(quiet_cpu "$pid")
  echo "$name: CPU with no requests: ${T[$name,quiet0]} of a core with none held, ${T[$name,quiet1]} holding $HELD"
  p50s=(); p99s=(); rps=()
  a0=$(nginx_accepts "$NGINX_PORT")
  for r in $(seq 1 "$ROUNDS"); do
    run "$name, $HELD held" "http://127.0.0.1:$port/" 8 "$pid"
    p50s+=("$P50"); p99s+=("$P99"); rps+=("$RPS")
  done
  a1=$(nginx_accepts "$NGINX_PORT")
  T[$name,up1]=$(( a1 - a0 - 1 ))
  echo "$name: connections opened to nginx: ${T[$name,up0]} in the runs with none held, ${T[$name,up1]} in the runs holding $HELD"
  rss2=$(rss_kib "$pid")
  st=$(cat "$HOLD_STATUS")
  echo "$name: after the runs: established on :$port $(established "$port"), holder $st, RSS $rss2 KiB"
  T[$name,held]="$(field "$st" held) held, $est established"
  T[$name,rss]="$(awk -v a="$rss0" -v b="$rss1" 'BEGIN {printf "%.1f -> %.1f MiB", a / 1024, b / 1024}')"
  T[$name,kib]=$(awk -v a="$rss0" -v b="$rss1" -v n="$(field "$st" held)" 'BEGIN {printf "%.1f", (b - a) / n}')
  T[$name,busy]="$(median "${p50s[@]}") / $(median "${p99s[@]}") ms ($(mean "${rps[@]}") req/s)"
  T[$name,left]="$(field "$st" open) of $(field "$st" held)"
  release "$port"
}
timeout_phase() { # name port pid: HELD heads against the 10s header timeout
  local name=$1 port=$2 pid=$3 st at12
  hold "$name" "$port" "$pid"
  echo "$name: holder $(head -n1 "$WORK/$name.hold.out"); listen queue overflows $OVERFLOWS; established on :$port $(established "$port")"
  sleep "$(awk -v t="$HELD_AT" -v now="$(date +%s.%N)" 'BEGIN {s = t + 12 - now; print (s > 0 ? s : 0)}')"
  at12=$(established "$port")
  st=$(cat "$HOLD_STATUS")
  echo "$name: 12 s after the last head: established on :$port $at12, holder $st"
  T[$name,t10]="$at12 established, $(field "$st" open) open at the client"
  T[$name,t10how]="$(field "$st" status_408) x 408, $(field "$st" status_none) without answer; after $(field "$st" closed_after_min) / $(field "$st" closed_after_median) / $(field "$st" closed_after_max) s"
  release "$port"
}

machine_line
echo "gateway new: $NEW_GATEWAY, old: $OLD_GATEWAY; --threads $THREADS; HAProxy $(haproxy -v | awk 'NR==1 {print $3}') nbthread 2; nginx 1 worker"
echo "descriptors: ulimit -n $FD_LIMIT (hard $FD_HARD); each process below has its own"
echo
echo "## Part 1: $HELD held partial heads (GET / HTTP/1.1, Host, then 'X-Slow: ' and nothing more)"
echo "header timeouts raised to ${HOLD_TIMEOUT}s so the held heads outlive the measurement:"
echo "  gateway listener {maxConnections 15000, requestHeadersTimeout \"${HOLD_TIMEOUT}s\"}"
echo "  HAProxy maxconn $HAP_MAXCONN, timeout http-request ${HOLD_TIMEOUT}s, and timeout client ${HOLD_TIMEOUT}s"
echo "  (HAProxy also ends a head that waits longer than timeout client, 30s in bench-gateway.sh)"
echo "HAProxy reserves about 2 x maxconn descriptors (a server side for every client)."
if [ $(( 2 * HAP_MAXCONN + 32 )) -gt "$FD_HARD" ]; then
  echo "  maxconn $HAP_MAXCONN wants more than the hard limit $FD_HARD, so it runs with 'no strict-limits' on"
  echo "  $FD_HARD descriptors; the held heads have no server side and take about $HELD of them"
fi
echo "HAProxy stops keeping idle server connections once it uses more than tune.pool-high-fd-ratio (25%)"
echo "  of those descriptors; $HELD held heads pass it, and it then opens a connection to nginx per request."
echo "  'haproxy-pool' is the same HAProxy with tune.pool-high-fd-ratio 90 and tune.pool-low-fd-ratio 80, so"
echo "  it keeps its nginx connections as the gateway does."
echo "latency: wrk -t1 -c8 -d${DURATION}s, $ROUNDS runs each, median of the runs"
echo "-- gateway"
start_gateway_on gw-hold "$NEW_GATEWAY" "$GW_HOLD_PORT" "$((ADMIN_PORT + 1))" \
  ", \"maxConnections\": 15000, \"requestHeadersTimeout\": \"${HOLD_TIMEOUT}s\""
GW_PID=$PID
hold_phase gateway "$GW_HOLD_PORT" "$GW_PID"
stop "$GW_PID"
echo "-- haproxy"
start_haproxy_t hap-hold "$HAP_HOLD_PORT" "$HAP_MAXCONN" "${HOLD_TIMEOUT}s" "${HOLD_TIMEOUT}s"
HAP_PID=$PID
grep -h -E 'WARNING|ALERT' "$WORK/hap-hold.log" | sed 's/^/haproxy: /' || true
hold_phase haproxy "$HAP_HOLD_PORT" "$HAP_PID"
stop "$HAP_PID"
echo "-- haproxy-pool"
start_haproxy_t hap-pool "$HAP_HOLD_PORT" "$HAP_MAXCONN" "${HOLD_TIMEOUT}s" "${HOLD_TIMEOUT}s" \
  "  tune.pool-high-fd-ratio 90
  tune.pool-low-fd-ratio 80"
HAP_PID=$PID
hold_phase haproxy-pool "$HAP_HOLD_PORT" "$HAP_PID"
stop "$HAP_PID"

echo "-- 10s header timeout (gateway default; HAProxy timeout http-request 10s, timeout client 30s)"
start_gateway_on gw-t10 "$NEW_GATEWAY" "$GW_T10_PORT" "$((ADMIN_PORT + 2))" ", \"maxConnections\": 15000"
GW_PID=$PID
timeout_phase gateway "$GW_T10_PORT" "$GW_PID"
stop "$GW_PID"
start_haproxy_t hap-t10 "$HAP_T10_PORT" "$HAP_MAXCONN" 10s 30s
HAP_PID=$PID
timeout_phase haproxy "$HAP_T10_PORT" "$HAP_PID"
stop "$HAP_PID"

echo
echo "| $HELD held partial heads | gateway | HAProxy 2.6 | HAProxy 2.6, pool-high-fd-ratio 90 |"
echo "| --- | --- | --- | --- |"
row() { # label key
  printf '| %s | %s | %s | %s |\n' "$1" "${T[gateway,$2]:--}" "${T[haproxy,$2]:--}" "${T[haproxy-pool,$2]:--}"; }
row "held (client), established (ss)" held
row "RSS before -> while holding" rss
row "KiB per held connection" kib
row "p50 / p99, none held (wrk -t1 -c8)" idle
row "p50 / p99, $HELD held" busy
for k in gateway haproxy haproxy-pool; do T[$k,quiet]="${T[$k,quiet0]} -> ${T[$k,quiet1]}"; T[$k,up]="${T[$k,up0]} -> ${T[$k,up1]}"; done
row "connections opened to nginx in those runs: none held -> held" up
row "CPU without requests: none held -> held" quiet
row "still open after the runs (${HOLD_TIMEOUT}s timeout)" left
row "10s header timeout: left 12 s after the last head" t10
row "10s header timeout: answers; closed after min / median / max" t10how
echo
echo "## Part 2: throughput, gateway before (bb6084d) and after the limits"
echo "wrk -t1 -c64 -d${DURATION}s, $ROUNDS interleaved rounds; both gateways with the same plain config"
start_haproxy_t haproxy "$HAP_PORT" 4000 10s 30s
HAP_PID=$PID
start_gateway_on gw-old "$OLD_GATEWAY" "$OLD_PORT" "$((ADMIN_PORT + 3))" ""
OLD_PID=$PID
start_gateway_on gw-new "$NEW_GATEWAY" "$NEW_PORT" "$((ADMIN_PORT + 4))" ""
NEW_PID=$PID
rows=() olds=() news=() ratios=()
for r in $(seq 1 "$ROUNDS"); do
  echo "-- round $r"
  run nginx "http://127.0.0.1:$NGINX_PORT/" 64; n=$RPS
  run haproxy "http://127.0.0.1:$HAP_PORT/" 64 "$HAP_PID"; h=$RPS
  run gateway-old "http://127.0.0.1:$OLD_PORT/" 64 "$OLD_PID"; o=$RPS
  run gateway-new "http://127.0.0.1:$NEW_PORT/" 64 "$NEW_PID"; w=$RPS
  ratio=$(awk -v a="$w" -v b="$o" 'BEGIN {printf "%.3f", a / b}')
  rows+=("| $r | $n | $h | $o | $w | $ratio |")
  olds+=("$o"); news+=("$w"); ratios+=("$ratio")
done
echo
echo "| round | nginx direct | HAProxy | gateway bb6084d | gateway new | new / old |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo "| mean | | | $(mean "${olds[@]}") | $(mean "${news[@]}") | $(awk -v a="$(mean "${news[@]}")" -v b="$(mean "${olds[@]}")" 'BEGIN {printf "%.3f", a / b}') |"
echo
echo "req/s per run; new / old per round and of the means."
