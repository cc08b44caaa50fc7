#!/bin/sh
# make bench: every bench script under lua5.4 and luajit. Each prints its figures and the ratio
# (SDK speed / baseline speed, both measured in this run) with its goal, OK or MISSED.
# Then the scripts that measure nginx (always LuaJIT inside) once, driven by luajit.
# Env: BENCH_INTERPS="lua5.4 luajit",
#      BENCH_ONLY="http_get https_get webhook json_decode memory wait_h2 instr",
#      BENCH_ONCE="wait_ngx" (run once; "" skips them),
#      BENCH_N / BENCH_ROUNDS (per script defaults), BENCH_MEM_TOTAL (default 100000).
#      instr (callgrind instructions per GET, vs raw libcurl; BENCH_BASE=<built clone> adds
#      the ratio to that tree, e.g. a release: the one figure that wall-clock noise cannot move).
set -u
cd "$(dirname "$0")/.."
INTERPS=${BENCH_INTERPS:-"lua5.4 luajit"}
ONLY=${BENCH_ONLY:-"http_get https_get webhook json_decode memory wait_h2 instr"}
ONCE=${BENCH_ONCE-"wait_ngx"}
echo "== bench: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
run() { # interp build script
  if ! LUA_PATH="./lua/?.lua;./lua/?/init.lua;./bench/?.lua;;" LUA_CPATH="./$2/?.so;;" "$1" "bench/$3.lua"; then
    echo "!! bench/$3.lua failed under $1"; rc=1
  fi
}
for interp in $INTERPS; do
  command -v "$interp" >/dev/null 2>&1 || { echo "skip $interp (not installed)"; continue; }
  case $interp in
    luajit) build=build/luajit ;;
    lua5.1) build=build/5.1 ;;
    *) build=build/5.4 ;;
  esac
  for b in $ONLY; do run "$interp" "$build" "$b"; done
done
for b in $ONCE; do
  if command -v luajit >/dev/null 2>&1; then run luajit build/luajit "$b"; else echo "skip $b (no luajit)"; fi
done
exit $rc
