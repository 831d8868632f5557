#!/usr/bin/env bash
# The client matrix: the gateway against HAProxy 2.6 in front of the same nginx, measured with
# the load generators people have at hand, side by side in one run.
#
#   flock /tmp/bench.lock loadtest/bench-clients.sh
#   ROUNDS=5 DURATION=10 flock /tmp/bench.lock loadtest/bench-clients.sh
#   ROUNDS=1 DURATION=2 HELD=1000 flock /tmp/bench.lock loadtest/bench-clients.sh   # smoke test
#
# nginx (1 worker) serves a 27-byte JSON. HAProxy (nbthread 1, the setup of this matrix's first
# measurement; maxconn 4000, http-reuse always) and the gateway (2 event loops, --access-log off)
# proxy to it with keep-alive both sides; with DEFER_ACCEPT=1 (the default) both listen with
# TCP_DEFER_ACCEPT (HAProxy's bind option defer-accept, the gateway's listener deferAccept). Every
# row runs against HAProxy and the gateway in turn (which goes first alternates by round), rounds
# interleaved so machine noise hits both alike. Rows:
#   ab        ab -k -n 20000 -c 32                     HTTP/1.0 keep-alive
#   siege     siege -b -c16 -t<DURATION-1>S            a connection per request: a temporary
#                                                      .siegerc (-R) says 'connection = close'
#   wrk       wrk -t1 -c64 -d<DURATION>s               keep-alive
#   wrk-pipe  wrk -t1 -c32 -d<DURATION>s               16 requests per write (a wrk.format Lua
#                                                      script, as wrk's scripts/pipeline.lua)
#   hey       hey -n 40000 -c 32                       keep-alive; skipped when hey is missing
#                                                      (ab and hey run a fixed number of requests)
#   lt-ka     loadtest -b -c 64 -t <DURATION>S         keep-alive
#   lt-close  loadtest -b -c 16 -t <DURATION-1>S --connection close
#   held      HELD (10000) idle keep-alive connections held on a fresh HAProxy and a fresh gateway
#             (loadtest/hold-idle.py: one complete request each, then nothing), and wrk -t1 -c8
#             -d<DURATION>s --latency while they are held
# Printed per round and row: req/s through HAProxy and through the gateway, the proxy's CPU per
# request (user + sys from /proc/<pid>/stat), TCP connections accepted per request on the whole
# machine (/proc/net/snmp PassiveOpens: about 1 with connection close, about 0 with keep-alive),
# failed or non-2xx responses, and gateway/HAProxy. For 'held' also: the proxy's RSS growth per
# held connection (VmRSS before and while holding), wrk's p99, and the connections nginx accepted
# during that wrk run (its stub_status). At the end: the mean ratio per row, and each proxy's mean
# CPU per request.
#
# The held row's proxies are started fresh every round so their RSS growth is not hidden by
# memory kept from earlier runs. HAProxy gets maxconn HELD+100 (and 'no strict-limits' when the
# 2 x maxconn descriptors it wants exceed the hard limit) and 'timeout http-keep-alive' long
# enough to keep the held connections for the whole measurement; the gateway gets listener
# maxConnections HELD+100 (its default is half the descriptor limit) and raises its own soft
# descriptor limit. As configured, HAProxy stops keeping idle connections to nginx once more than
# tune.pool-high-fd-ratio (25%) of its descriptors are in use, so while the held connections are
# there it may open a connection to nginx per request: the nginx accepts column shows it.
#
# Env: ROUNDS (3), DURATION (seconds per timed run, 5; the connection-close rows run DURATION-1,
#      at least 1), HELD (10000), GATEWAY_BIN (default: this tree's release build, built first),
#      LOADTEST_BIN (default .build/release/loadtest, built when missing), GATEWAY_THREADS (2),
#      PIPELINE (16), BASE_PORT (18290; uses BASE_PORT .. BASE_PORT+7), HAPROXY_THREADS (1),
#      DEFER_ACCEPT (1; 0 leaves both proxies' accept as by default), ROWS (the rows to run,
#      in order, space-separated: default all, "ab siege wrk wrk-pipe hey lt-ka lt-close held"),
#      HAPROXY_SCHED (other: as started; batch: every HAProxy thread SCHED_BATCH with `chrt`, the
#      policy the gateway's event loops take by default, --loop-scheduling), HAPROXY_NICE (0; e.g.
#      -5: every HAProxy thread at that nice value with `renice`, as the gateway's loops take by
#      default when allowed, --loop-nice), CHECK_FLOORS (0; 1: exit 1 when a row's mean ratio is
#      below its floor, FLOOR below, which the end of every run prints each row against).
# Needs nginx, haproxy, wrk, siege, ab, hey, curl and python3:
#   apt-get install -y haproxy nginx-light wrk siege apache2-utils hey curl python3
# The machine is shared: wrap the run in `flock /tmp/bench.lock` so benchmarks do not overlap.
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CLOSE_DURATION=$(( DURATION > 1 ? DURATION - 1 : 1 ))
HELD=${HELD:-10000}
THREADS=${GATEWAY_THREADS:-2}
PIPELINE=${PIPELINE:-16}
BASE=${BASE_PORT:-18290}
export HAPROXY_THREADS=${HAPROXY_THREADS:-1}
DEFER_ACCEPT=${DEFER_ACCEPT:-1}
GW_LISTENER=""
if [ "$DEFER_ACCEPT" = 1 ]; then
  export HAPROXY_BIND_OPTIONS=defer-accept
  GW_LISTENER=', "deferAccept": true'
fi

require_tools "apt-get install -y haproxy nginx-light wrk siege apache2-utils hey curl python3" \
  nginx haproxy wrk siege ab curl python3
HAVE_HEY=1
command -v hey >/dev/null || HAVE_HEY=0

gateway_binary
if [ -n "${LOADTEST_BIN:-}" ]; then
  LOADTEST=$LOADTEST_BIN
else
  LOADTEST=.build/release/loadtest
  [ -x "$LOADTEST" ] || swift build -c release --product loadtest >/dev/null 2>&1
fi
[ -x "$LOADTEST" ] || { echo "no executable at $LOADTEST" >&2; exit 1; }

# The held connections take a descriptor each in the holder and in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
if [ $(( HELD + 200 )) -gt "$FD_LIMIT" ]; then
  echo "HELD=$HELD needs more descriptors than the limit $FD_LIMIT: lower HELD or raise the hard limit" >&2; exit 1
fi

NGINX_PORT=$BASE HAP_PORT=$((BASE + 1)) GW_PORT=$((BASE + 2)) GW_ADMIN=$((BASE + 3))
HAP_HELD_PORT=$((BASE + 4)) GW_HELD_PORT=$((BASE + 5)) GW_HELD_ADMIN=$((BASE + 6))
HELD_MAXCONN=$(( HELD + 100 ))
HOLD_TIMEOUT=$(( DURATION + 120 ))

bench_init
start_nginx "$NGINX_PORT" "$NGINX_STATUS_LOCATION"

start_haproxy haproxy "$HAP_PORT" "$NGINX_PORT" 4000
HAP_PID=$PID
HAPROXY_SCHED=${HAPROXY_SCHED:-other}
HAPROXY_NICE=${HAPROXY_NICE:-0}
case $HAPROXY_SCHED in
  other|batch) ;;
  *) echo "HAPROXY_SCHED must be other or batch, not '$HAPROXY_SCHED'" >&2; exit 1 ;;
esac
# HAProxy's threads under the policy and nice value asked for (a like-for-like check of the
# gateway's --loop-scheduling and --loop-nice).
haproxy_policy() { # pid
  if [ "$HAPROXY_SCHED" = batch ]; then chrt -a -b -p 0 "$1"; fi
  if [ "$HAPROXY_NICE" != 0 ]; then
    for task in /proc/"$1"/task/*; do renice -n "$HAPROXY_NICE" -p "${task##*/}" >/dev/null; done
  fi
}
haproxy_policy "$HAP_PID"
start_gateway gateway "$GATEWAY" "$GW_PORT" "$GW_ADMIN" "$NGINX_PORT" "$GW_LISTENER"
GW_PID=$PID
# The nice value the gateway's loops ended up with: -5 by default when this runs as root, else as started.
GW_LOOP_NICE=$(for task in /proc/"$GW_PID"/task/*; do
  if grep -q '^NIO-ELT-' "$task/comm"; then awk '{print $19}' "$task/stat"; fi
done | sort -u | paste -sd/)

cat > "$WORK/siegerc" <<RC
# siege's settings for the siege row; with -R siege reads this file instead of ~/.siege/siege.conf
connection = close
protocol = HTTP/1.1
verbose = false
quiet = false
json_output = false
logging = false
parser = false
failures = 1000000
RC
write_pipeline_lua "$WORK/pipeline.lua" "$PIPELINE"

passive_opens() { awk '$1 == "Tcp:" && $2 ~ /^[0-9]+$/ {print $7}' /proc/net/snmp; }
fmt0() { if is_num "${1:-}"; then printf '%.0f' "$1"; else echo n/a; fi; }
fmt1() { if is_num "${1:-}"; then printf '%.1f' "$1"; else echo n/a; fi; }
mean() { # numbers... (n/a skipped) -> mean, or n/a
  printf '%s\n' "$@" | awk '$1 ~ /^[0-9.]+$/ {s += $1; n++} END {if (n) printf "%.3f", s / n; else print "n/a"}'; }

# The clients. Each takes a URL and sets RPS (req/s), REQS (responses counted), ERRS (failed
# plus non-2xx) and NOTE; RPS is empty when the output could not be read.
wrk_parse() {
  RPS=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$1")
  REQS=$(awk '/requests in/ {print $1}' <<<"$1")
  ERRS=$(awk '/Non-2xx/ {s += $NF} /Socket errors/ {for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i}
    END {print s + 0}' <<<"$1")
  P99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$1")")
}
client_ab() {
  local out
  out=$(ab -k -n 20000 -c 32 "$1" 2>&1) || true
  RPS=$(awk '/^Requests per second:/ {printf "%.0f", $4}' <<<"$out")
  REQS=$(awk '/^Complete requests:/ {print $3}' <<<"$out")
  ERRS=$(awk '/^Failed requests:/ || /^Non-2xx responses:/ {s += $3} END {print s + 0}' <<<"$out")
  NOTE="keep-alive $(awk '/^Keep-Alive requests:/ {print $3}' <<<"$out")/${REQS:-?}"
}
client_siege() {
  local out
  # siege writes its summary to standard error. It sometimes never returns after its time is up
  # (a thread stuck at the end of a run, seen against both proxies): the round's row is then n/a.
  out=$(timeout -s KILL $(( CLOSE_DURATION + 30 )) siege -R "$WORK/siegerc" -b -c16 -t"${CLOSE_DURATION}S" "$1" 2>&1 >/dev/null) || true
  RPS=$(awk -F: '/^Transaction rate:/ {split($2, a, " "); printf "%.0f", a[1]}' <<<"$out")
  REQS=$(awk -F: '/^Transactions:/ {split($2, a, " "); print a[1]}' <<<"$out")
  ERRS=$(awk -F: '/^Failed transactions:/ {split($2, a, " "); print a[1] + 0}' <<<"$out")
  NOTE=""
}
client_wrk() {
  local out
  out=$(wrk -t1 -c64 -d"${DURATION}s" "$1") || true
  wrk_parse "$out"; NOTE=""
}
client_wrk_pipe() {
  local out
  out=$(wrk -t1 -c32 -d"${DURATION}s" -s "$WORK/pipeline.lua" "$1") || true
  wrk_parse "$out"; NOTE=""
}
client_hey() {
  local out
  out=$(hey -n 40000 -c 32 "$1" 2>&1) || true
  RPS=$(awk '$1 == "Requests/sec:" {printf "%.0f", $2}' <<<"$out")
  # "Status code distribution:" and "Error distribution:" list "[code or count] N ..." lines.
  REQS=$(awk '/^Status code distribution:/ {s = 1; next} /^[A-Z]/ {s = 0}
    s && $1 ~ /^\[[0-9]+\]$/ {n += $2} END {print n + 0}' <<<"$out")
  ERRS=$(awk '/^Status code distribution:/ {s = 1; next} /^Error distribution:/ {s = 2; next} /^[A-Z]/ {s = 0}
    s == 1 && $1 ~ /^\[[0-9]+\]$/ && $1 !~ /^\[2/ {n += $2} s == 2 && $1 ~ /^\[[0-9]+\]$/ {gsub(/[][]/, "", $1); n += $1}
    END {print n + 0}' <<<"$out")
  NOTE=""
}
loadtest_parse() { # json -> RPS REQS ERRS
  read -r RPS REQS ERRS < <(python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
    bad = sum(n for code, n in d.get("status_codes", {}).items() if not code.startswith("2"))
    print("%.0f %d %d" % (d["transaction_rate"], d["responses"], d["socket_failures"] + bad))
except (ValueError, KeyError, TypeError):
    print("- 0 0")' "$1") || true
  [ "$RPS" = "-" ] && RPS=""
  NOTE=""
}
client_lt_ka() {
  local out
  out=$("$LOADTEST" -b -c 64 -t "${DURATION}S" -q --json "$1") || true
  loadtest_parse "$out"
}
client_lt_close() {
  local out
  out=$("$LOADTEST" -b -c 16 -t "${CLOSE_DURATION}S" --connection close -q --json "$1") || true
  loadtest_parse "$out"
}

declare -A LABEL RATIOS HRPS GRPS HCPU GCPU FLOOR
# The lowest gateway/HAProxy ratio of each row in this matrix's first measurement (the gateway
# before HTTP/1.0 clients shared its upstream pool): a row whose mean falls below its floor has
# gone backwards. The loadtest and held rows came later and have none. CHECK_FLOORS=1 makes the
# script exit 1 when a row is below.
FLOOR[ab]=0.20 FLOOR[siege]=0.80 FLOOR[wrk]=0.91 FLOOR[wrk-pipe]=1.00 FLOOR[hey]=1.07
ALL_ROWS="ab siege wrk wrk-pipe hey lt-ka lt-close held"
read -r -a ROWS <<<"${ROWS:-$ALL_ROWS}"
for row in "${ROWS[@]}"; do
  [[ " $ALL_ROWS " == *" $row "* ]] || { echo "ROWS: no row named $row (rows: $ALL_ROWS)" >&2; exit 1; }
done
LABEL[ab]="ab -k -n 20000 -c 32 (HTTP/1.0 keep-alive)"
LABEL[siege]="siege -b -c16 -t${CLOSE_DURATION}S (connection = close)"
LABEL[wrk]="wrk -t1 -c64 -d${DURATION}s"
LABEL[wrk-pipe]="wrk -t1 -c32 -d${DURATION}s, $PIPELINE pipelined"
LABEL[hey]="hey -n 40000 -c 32"
LABEL[lt-ka]="loadtest -b -c 64 -t ${DURATION}S"
LABEL[lt-close]="loadtest -b -c 16 -t ${CLOSE_DURATION}S --connection close"
LABEL[held]="$HELD held idle, wrk -t1 -c8 -d${DURATION}s"

# measure row proxy-name url pid -> one line; sets RPS and CPU (the proxy's µs per request)
measure() {
  local fn=client_${1//-/_} t0 o0 conns
  t0=$(cpu_ticks "$4"); o0=$(passive_opens)
  RPS="" REQS=0 ERRS=0 NOTE="" CPU="n/a"
  "$fn" "$3"
  if is_num "$RPS" && is_num "$REQS" && [ "$REQS" -gt 0 ]; then
    CPU=$(awk -v t="$(( $(cpu_ticks "$4") - t0 ))" -v hz="$(getconf CLK_TCK)" -v n="$REQS" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
    conns=$(awk -v c="$(( $(passive_opens) - o0 ))" -v n="$REQS" 'BEGIN {printf "%.3f", c / n}')
    printf "   %-8s %8s req/s   cpu %6s us/req   accepts/req %6s   failed %s%s\n" "$2" "$RPS" "$CPU" "$conns" "${ERRS:-0}" "${NOTE:+   $NOTE}"
  else
    RPS="n/a"
    printf "   %-8s      n/a (the client's output could not be read)\n" "$2"
  fi
}
ratio() { if is_num "$1" && is_num "$2" && [ "$2" != 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; else echo n/a; fi; }

# held: a fresh proxy, HELD idle keep-alive connections, RSS before and while, then wrk -c8.
declare -A HKIB GKIB HP99 GP99
hold_run() { # proxy-name port pid -> one line; sets RPS KIB P99
  local name=$1 port=$2 pid=$3 rss0 rss1 st a0 a1 out held
  wrk -t1 -c8 -d1s "http://127.0.0.1:$port/" >/dev/null || true  # warm-up: upstream connections, buffers
  sleep 0.5
  rss0=$(rss_kib "$pid")
  start_holder "$name" hold-idle.py "$port"
  local holder=$HOLDER
  sleep 1
  rss1=$(rss_kib "$pid")
  held=$(field "$(head -n1 "$WORK/$name.hold.out")" held)
  a0=$(nginx_accepts "$NGINX_PORT")
  out=$(wrk -t1 -c8 -d"${DURATION}s" --latency "http://127.0.0.1:$port/") || true
  a1=$(nginx_accepts "$NGINX_PORT")
  wrk_parse "$out"
  st=$(cat "$WORK/$name.hold")
  stop "$holder"
  KIB=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN {if (n > 0) printf "%.2f", (b - a) / n; else print "n/a"}')
  printf "   %-8s %8s req/s   p99 %7s ms   RSS %6.1f -> %6.1f MiB = %5s KiB/conn   held %s (open after wrk %s, %s s to open)   nginx accepts %s   failed %s\n" \
    "$name" "$RPS" "$P99" "$(awk -v k="$rss0" 'BEGIN {print k / 1024}')" "$(awk -v k="$rss1" 'BEGIN {print k / 1024}')" "$KIB" \
    "$held" "$(field "$st" open)" "$(field "$(head -n1 "$WORK/$name.hold.out")" connect_seconds)" "$(( a1 - a0 - 1 ))" "$ERRS"
}
held_haproxy() {
  local strict
  strict=$(no_strict_limits "$HELD_MAXCONN" "$FD_LIMIT")
  start_haproxy haproxy-held "$HAP_HELD_PORT" "$NGINX_PORT" "$HELD_MAXCONN" "$strict" "  timeout http-keep-alive ${HOLD_TIMEOUT}s"
  haproxy_policy "$PID"
  if [ "$r" = 1 ]; then
    echo "   haproxy: maxconn $HELD_MAXCONN${strict:+, no strict-limits}, timeout http-keep-alive ${HOLD_TIMEOUT}s"
    grep -h -E 'WARNING|ALERT' "$WORK/haproxy-held.log" | sed 's/^/   haproxy: /' || true
  fi
  hold_run haproxy "$HAP_HELD_PORT" "$PID"
  stop "$PID"
  H=$RPS; HKIB[$r]=$KIB; HP99[$r]=$P99
}
held_gateway() {
  start_gateway gateway-held "$GATEWAY" "$GW_HELD_PORT" "$GW_HELD_ADMIN" "$NGINX_PORT" ", \"maxConnections\": $HELD_MAXCONN$GW_LISTENER"
  hold_run gateway "$GW_HELD_PORT" "$PID"
  stop "$PID"
  G=$RPS; GKIB[$r]=$KIB; GP99[$r]=$P99
}

machine_line
echo "HAProxy $(haproxy -v | awk 'NR == 1 {print $3}') nbthread $HAPROXY_THREADS (SCHED_${HAPROXY_SCHED^^}, nice $HAPROXY_NICE), http-reuse always${HAPROXY_BIND_OPTIONS:+, bind $HAPROXY_BIND_OPTIONS}; gateway $GATEWAY --threads $THREADS --access-log off (loops at nice $GW_LOOP_NICE)${GW_LISTENER:+, listener deferAccept}; nginx 1 worker"
echo "clients: ab $(ab -V | awk 'NR == 1 {print $5}'), $(siege -V 2>&1 | awk 'NR == 1 {print $1, $2}'), $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}'), $LOADTEST"
[ "$HAVE_HEY" = 1 ] || echo "hey: not installed (apt-get install -y hey), its row is skipped"
echo "$ROUNDS interleaved rounds, DURATION ${DURATION}s (connection-close rows ${CLOSE_DURATION}s), HELD $HELD, descriptors $FD_LIMIT"
echo "accepts/req: TCP connections accepted on the whole machine per request (/proc/net/snmp PassiveOpens)"
for r in $(seq 1 "$ROUNDS"); do
  echo "-- round $r"
  for row in "${ROWS[@]}"; do
    echo " ${LABEL[$row]}"
    if [ "$row" = hey ] && [ "$HAVE_HEY" = 0 ]; then
      echo "   skipped: hey is not installed"
      continue
    fi
    if [ "$row" = held ]; then
      if [ $(( r % 2 )) = 1 ]; then held_haproxy; held_gateway; else held_gateway; held_haproxy; fi
    elif [ $(( r % 2 )) = 1 ]; then
      measure "$row" haproxy "http://127.0.0.1:$HAP_PORT/" "$HAP_PID"; H=$RPS; HC=$CPU
      measure "$row" gateway "http://127.0.0.1:$GW_PORT/" "$GW_PID"; G=$RPS; GC=$CPU
    else
      measure "$row" gateway "http://127.0.0.1:$GW_PORT/" "$GW_PID"; G=$RPS; GC=$CPU
      measure "$row" haproxy "http://127.0.0.1:$HAP_PORT/" "$HAP_PID"; H=$RPS; HC=$CPU
    fi
    q=$(ratio "$G" "$H")
    echo "   gateway/haproxy $q"
    RATIOS[$row]="${RATIOS[$row]:-} $q"; HRPS[$row]="${HRPS[$row]:-} $H"; GRPS[$row]="${GRPS[$row]:-} $G"
    [ "$row" = held ] || { HCPU[$row]="${HCPU[$row]:-} $HC"; GCPU[$row]="${GCPU[$row]:-} $GC"; }
  done
done

echo
echo "| client | HAProxy req/s (mean) | gateway req/s (mean) | gateway/HAProxy per round | mean ratio | CPU µs/req HAProxy / gateway (mean) |"
echo "| --- | ---: | ---: | --- | ---: | --- |"
for row in "${ROWS[@]}"; do
  if [ "$row" = hey ] && [ "$HAVE_HEY" = 0 ]; then
    echo "| ${LABEL[$row]} | skipped: hey not installed | | | | |"
    continue
  fi
  # shellcheck disable=SC2086  # the lists are space-separated numbers
  cpus="n/a (see the held lines below)"
  [ "$row" = held ] || cpus="$(fmt1 "$(mean ${HCPU[$row]})") / $(fmt1 "$(mean ${GCPU[$row]})")"
  printf '| %s | %s | %s | %s | %s | %s |\n' "${LABEL[$row]}" "$(fmt0 "$(mean ${HRPS[$row]})")" "$(fmt0 "$(mean ${GRPS[$row]})")" \
    "$(xargs <<<"${RATIOS[$row]}")" "$(mean ${RATIOS[$row]})" "$cpus"
done
echo
below=0
echo "each row's mean ratio against its floor (the lowest ratio of this matrix's first measurement):"
for row in "${ROWS[@]}"; do
  [ -n "${FLOOR[$row]:-}" ] || continue
  [ "$row" = hey ] && [ "$HAVE_HEY" = 0 ] && continue
  # shellcheck disable=SC2086  # a space-separated list of numbers
  m=$(mean ${RATIOS[$row]})
  verdict=ok
  if ! is_num "$m" || awk -v m="$m" -v f="${FLOOR[$row]}" 'BEGIN {exit !(m < f)}'; then verdict=BELOW; below=$((below + 1)); fi
  printf '   %-9s %6s  floor %s  %s\n' "$row" "$m" "${FLOOR[$row]}" "$verdict"
done
echo
if [ -n "${HKIB[*]:-}" ]; then
  echo "held: RSS growth per held connection (KiB) and wrk -t1 -c8 p99 (ms) while $HELD are held, mean of the rounds"
  echo "   haproxy  $(mean "${HKIB[@]}") KiB/conn   p99 $(mean "${HP99[@]}") ms"
  echo "   gateway  $(mean "${GKIB[@]}") KiB/conn   p99 $(mean "${GP99[@]}") ms"
  echo "nginx accepts well above 0 in a held run: that proxy connected to nginx for each request while holding"
  echo "  (HAProxy past tune.pool-high-fd-ratio, see the top of $0), which sets its req/s and p99 there"
fi
if [ "${CHECK_FLOORS:-0}" = 1 ] && [ "$below" -gt 0 ]; then
  echo "$below row(s) below their floor" >&2
  exit 1
fi
