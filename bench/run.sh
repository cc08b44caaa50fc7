#!/bin/sh
# make bench: every bench script under lua5.4 and luajit. Each prints its figures and the ratio
# (SDK speed / baseline speed, both measured in this run) with its goal, OK or MISSED.
# Env: BENCH_INTERPS="lua5.4 luajit", BENCH_ONLY="http_get webhook json_decode memory",
#      BENCH_N / BENCH_ROUNDS (per script defaults), BENCH_MEM_TOTAL (default 100000).
#      instr (callgrind instructions per GET, vs raw libcurl; BENCH_BASE=<built clone> adds
#      the ratio to that tree, e.g. a release: the one figure that wall-clock noise cannot move).
set -u
cd "$(dirname "$0")/.."
INTERPS=${BENCH_INTERPS:-"lua5.4 luajit"}
ONLY=${BENCH_ONLY:-"http_get webhook json_decode memory instr"}
echo "== bench: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
for interp in $INTERPS; do
  command -v "$interp" >/dev/null 2>&1 || { echo "skip $interp (not installed)"; continue; }
  case $interp in
    luajit) build=build/luajit ;;
    lua5.1) build=build/5.1 ;;
    *) build=build/5.4 ;;
  esac
  for b in $ONLY; do
    if ! LUA_PATH="./lua/?.lua;./lua/?/init.lua;./bench/?.lua;;" LUA_CPATH="./$build/?.so;;" \
        "$interp" "bench/$b.lua"; then
      echo "!! bench/$b.lua failed under $interp"; rc=1
    fi
  done
done
exit $rc
