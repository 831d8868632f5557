# Shared by the loadtest/bench-*.sh scripts: sourced, never run.
#
#   source "$(dirname "$0")/lib/bench.sh"
#
# bench_init makes the work directory WORK and the list pids of processes started in the
# background, and installs bench_cleanup on exit. The start_* functions add what they start to
# pids and keep their files in WORK; start_gateway reads THREADS (the gateway's --threads).

# The gateway to measure: GATEWAY_BIN, or this tree's release build, built first. Sets GATEWAY.
gateway_binary() {
  if [ -n "${GATEWAY_BIN:-}" ]; then
    GATEWAY=$GATEWAY_BIN
  else
    swift build -c release --product gateway >/dev/null 2>&1
    GATEWAY=.build/release/gateway
  fi
  [ -x "$GATEWAY" ] || { echo "no executable at $GATEWAY" >&2; exit 1; }
}

# A wrk script that sends N requests for / in every write, as wrk's scripts/pipeline.lua does.
write_pipeline_lua() { # file N
  cat > "$1" <<LUA
init = function(args)
   local r = {}
   for i = 1, $2 do r[i] = wrk.format(nil, "/") end
   req = table.concat(r)
end
request = function() return req end
LUA
}

require_tools() { # hint tool... : exits naming the first missing tool and the install line
  local hint=$1 tool; shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool: $hint" >&2; exit 1; }
  done
}

bench_init() {
  WORK=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  stop_nginx
  rm -rf "$WORK"
}

stop() { # pid: end one process this script started and forget it
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

wait_http() { # port: until something answers HTTP there
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2; exit 1
}

# nginx, 1 worker, daemonized, serving a 27-byte JSON on 127.0.0.1:PORT; its files in WORK.
start_nginx() { # port [extra server lines]
  cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$1;
    location / { default_type application/json; return 200 '{"status":"ok","qty":10000}'; }
${2:-}
  }
}
CONF
  nginx -p "$WORK" -c nginx.conf
}
# Stopped by its pid file, and waited for: a daemonized nginx keeps the descriptors it inherited
# (a flock's lock among them) until it exits.
stop_nginx() {
  [ -s "$WORK/nginx.pid" ] || return 0
  local np; np=$(cat "$WORK/nginx.pid")
  kill "$np" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$np" 2>/dev/null || break; sleep 0.1; done
}

# HAProxy as in bench-gateway.sh: nbthread HAPROXY_THREADS (2), keep-alive both sides,
# http-reuse always; HAPROXY_BIND_OPTIONS (none) go on its bind line.
haproxy_cfg() { # port backend-port maxconn [extra global lines] [extra defaults lines] [timeout client, 30s]
  cat <<CONF
global
  nbthread ${HAPROXY_THREADS:-2}
  maxconn $3
${4:-}
defaults
  mode http
  timeout connect 5s
  timeout client ${6:-30s}
  timeout server 30s
${5:-}
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$1${HAPROXY_BIND_OPTIONS:+ $HAPROXY_BIND_OPTIONS}
  default_backend be
backend be
  http-reuse always
  server nginx 127.0.0.1:$2
CONF
}
# HAProxy reserves about 2 x maxconn descriptors (each client may need a server side) and by
# default refuses to start when the process limit is lower: then it needs 'no strict-limits'.
no_strict_limits() { # maxconn descriptor-limit -> the global line, or nothing
  if [ $(( 2 * $1 + 32 )) -gt "$2" ]; then echo "  no strict-limits"; fi
}
start_haproxy() { # name port backend-port maxconn [global lines] [defaults lines] [timeout client] -> PID
  haproxy_cfg "$2" "$3" "$4" "${5:-}" "${6:-}" "${7:-}" > "$WORK/$1.cfg"
  haproxy -f "$WORK/$1.cfg" >"$WORK/$1.log" 2>&1 &
  PID=$!
  pids+=("$PID")
  wait_http "$2"
}

# The gateway proxying everything to one upstream, --access-log off, --threads THREADS.
gateway_json() { # port admin-port upstream-port [extra listener fields]
  cat <<CONF
{"listener": {"address": "127.0.0.1", "port": $1${4:-}}, "admin": {"address": "127.0.0.1", "port": $2},
 "serviceEntries": [{"host": "nginx", "endpoints": [{"address": "127.0.0.1", "port": $3}]}],
 "virtualServices": [{"http": [{"name": "all", "route": [{"destination": {"host": "nginx"}}]}]}]}
CONF
}
start_gateway() { # name binary port admin-port upstream-port [extra listener fields] -> PID
  gateway_json "$3" "$4" "$5" "${6:-}" > "$WORK/$1.json"
  "$2" --config "$WORK/$1.json" --access-log off --threads "$THREADS" >/dev/null 2>"$WORK/$1.err" &
  PID=$!
  pids+=("$PID")
  wait_http "$3" || { cat "$WORK/$1.err" >&2; exit 1; }
}

# Whether a client's output gave a number (tools print nothing or text when a run fails).
is_num() { [[ "${1:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
# A process's CPU time (user + sys) in clock ticks, from /proc/<pid>/stat.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Connections nginx has accepted (its stub_status at /nginx-status), counting the one asking.
nginx_accepts() { # port
  { curl -s "http://127.0.0.1:$1/nginx-status" || true; } | awk 'NR == 3 {print $1; f = 1} END {if (!f) print 0}'; }
NGINX_STATUS_LOCATION='    location = /nginx-status { stub_status; }'
field() { # "k=v k=v" key -> v (0 when absent)
  tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2; f = 1} END {if (!f) print 0}'; }
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
  if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000; printf "%.2f", n }'; }

# Starts a holder (loadtest/hold-idle.py or hold-partial-heads.py) against a port and waits until
# it printed its first counts (every connection tried). Sets HOLDER; its output in WORK/NAME.hold.out,
# its status file WORK/NAME.hold.
start_holder() { # name script port
  python3 "loadtest/$2" "$3" -n "$HELD" --status "$WORK/$1.hold" >"$WORK/$1.hold.out" 2>&1 &
  HOLDER=$!
  pids+=("$HOLDER")
  for _ in $(seq 1 1200); do
    [ -s "$WORK/$1.hold.out" ] && return 0
    kill -0 "$HOLDER" 2>/dev/null || { cat "$WORK/$1.hold.out" >&2; exit 1; }
    sleep 0.1
  done
  echo "$1: the holder did not finish in 120 s" >&2; exit 1
}

# Cores, CPU model, load and time of a run: the numbers are only comparable within one run.
machine_line() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
}

# Rows "NAME REQ/S req/s cpu US us/req ..." of two contenders in FILE: A's averages over B's.
ratio_summary() { # a b file
  awk -v a="$1" -v b="$2" '{rps[$1] += $2; cpu[$1] += $5; n[$1]++}
     END {printf "%s/%s: throughput %.3f, CPU per request %.3f (averages of %d rounds)\n", a, b,
          (rps[a]/n[a]) / (rps[b]/n[b]), (cpu[a]/n[a]) / (cpu[b]/n[b]), n[a]}' "$3"
}
