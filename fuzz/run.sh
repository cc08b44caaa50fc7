#!/bin/sh
# make fuzz: run each libFuzzer target for FUZZ_SECONDS (default 30) over its committed corpus
# fuzz/corpus/<target>/ plus build/fuzz/corpus/<target>/ (where new inputs are written, so the
# committed corpus only changes when someone copies finds back on purpose). A crash, leak,
# sanitizer report or failed invariant stops the run; the input is saved as
# build/fuzz/<target>-crash-*.  Usage: fuzz/run.sh target...
set -u
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-30}
rc=0
for t in "$@"; do
  mkdir -p "build/fuzz/corpus/$t"
  log="build/fuzz/$t.log"
  echo "== fuzz: $t for ${SECS}s (log: $log)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "build/fuzz/$t" -max_total_time="$SECS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="build/fuzz/$t-" "build/fuzz/corpus/$t" "fuzz/corpus/$t" > "$log" 2>&1
  st=$?
  grep -E "(DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$log"
  if [ "$st" -ne 0 ]; then
    echo "!! fuzz: $t FAILED (exit $st)"
    grep -E "ERROR|SUMMARY|invariant|artifact" "$log" | head -20
    rc=1
  fi
done
[ "$rc" -eq 0 ] && echo "fuzz: all targets clean"
exit $rc
