#!/usr/bin/env bash
# Builds the libFuzzer targets of the HTTP/1.1 head parser and body decoder (request and
# response) with swiftc, straight from the NIO-free files of Sources/HTTP1Wire, and runs each
# for SECONDS (default 60) from the seed corpus in fuzz/corpus/. Exits non-zero when a target
# crashes, trips a sanitizer or fails an oracle (fuzz/Oracle.swift); the input that did it is
# left in fuzz/.build/artifacts-<target>/.
#
#   fuzz/run.sh [SECONDS]      SWIFTC=/path/to/swiftc to choose the compiler
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
# Swift's own crash backtracer would read memory under ASan's nose; libFuzzer reports crashes.
export SWIFT_BACKTRACE=enable=no
swiftc=${SWIFTC:-swiftc}
out=fuzz/.build
mkdir -p "$out"
# Every parser file that does not import NIO (the ByteBuffer helpers do).
sources=$(grep -L '^import NIO' Sources/HTTP1Wire/*.swift)

status=0
for target in request response; do
  exe="$out/fuzz-$target"
  # ld.gold warns about every sanitizer symbol: the log is shown only when the build fails.
  if ! "$swiftc" -sanitize=fuzzer,address -parse-as-library -O -g -module-name HTTP1WireFuzz \
      $sources fuzz/Oracle.swift "fuzz/$target.swift" -o "$exe" >"$out/build-$target.log" 2>&1; then
    cat "$out/build-$target.log"
    echo "fuzz-$target: build failed"
    exit 1
  fi
  # New inputs libFuzzer finds go into a scratch corpus, never into the committed seeds.
  work="$out/corpus-$target"
  artifacts="$out/artifacts-$target/"
  mkdir -p "$work"
  rm -rf "$artifacts"
  mkdir -p "$artifacts"
  log="$out/$target.log"
  if "$exe" -max_total_time="$seconds" -print_final_stats=1 -dict=fuzz/http.dict -max_len=8192 \
      -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts" "$work" "fuzz/corpus/$target" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  if [ -n "$(ls -A "$artifacts")" ]; then
    result=FAILED
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  echo "fuzz-$target: $result in ${seconds}s, ${execs:-?} runs (${rate:-?}/s), ${cov:-no coverage line}, corpus $(ls "$work" | wc -l) + $(ls "fuzz/corpus/$target" | wc -l) seeds"
  if [ "$result" = FAILED ]; then
    grep -E 'ORACLE FAILED|ERROR|SUMMARY|Fatal error|input:' "$log" | head -20 || true
    ls "$artifacts"
  fi
done
exit $status
