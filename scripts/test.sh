#!/bin/sh
# Runs the whole suite: C core, unit and sandbox integration specs on Lua 5.4
# and LuaJIT, the nginx (OpenResty-style) integration specs, then the C core
# and unit specs on Lua 5.3, 5.2 (mpv's Lua) and 5.1.
# Prints "N passed, N failed" as its last line; exits non-zero on any failure.
# A pending (skipped) test is a failure unless spec/allowed_pending.lua lists
# it with a reason (spec/support/summary.lua); listed ones are "N skipped".
# Usage: scripts/test.sh [busted args...]   (e.g. --tags=core)
set -u
cd "$(dirname "$0")/.."

SUMMARY=$(mktemp "${TMPDIR:-/tmp}/ugen-summary.XXXXXX")
# Sandbox servers started by the specs (spec/support/sandbox.lua) live under
# this dir; whatever a crashed runner left behind is stopped on exit.
UGEN_SANDBOX_SPEC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ugen-spec-sandbox.XXXXXX")
export UGEN_SANDBOX_SPEC_DIR
cleanup() {
  find "$UGEN_SANDBOX_SPEC_DIR" -name nginx.pid 2>/dev/null | while read -r pidfile; do
    kill -TERM "$(cat "$pidfile")" 2>/dev/null
  done
  rm -rf "$SUMMARY" "$UGEN_SANDBOX_SPEC_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export UGEN_SUMMARY_FILE="$SUMMARY"
# the one list of allowed pendings, never another one from the environment
unset UGEN_ALLOWED_PENDING
rc=0

BUSTED=$(command -v busted)
SPECS=${UGEN_SPECS:-"spec/core spec/unit spec/integration"}

run_suite() {
  label=$1; interp=$2; shift 2
  before=$(wc -l < "$SUMMARY")
  echo "== $label: $interp busted $*"
  # shellcheck disable=SC2086
  if ! UGEN_SUITE_LABEL=$label "$interp" "$BUSTED" -o spec/support/summary.lua "$@"; then rc=1; fi
  after=$(wc -l < "$SUMMARY")
  # A runner that died before its summary (crash, signal) is one failure.
  if [ "$before" -eq "$after" ]; then echo "$label 0 1 0" >> "$SUMMARY"; rc=1; fi
}

# shellcheck disable=SC2086
run_suite lua5.4 lua5.4 "$@" $SPECS
# shellcheck disable=SC2086
run_suite luajit luajit "$@" $SPECS
if [ -z "${UGEN_SPECS:-}" ]; then
  if [ -d spec/nginx ]; then run_suite nginx luajit "$@" spec/nginx; fi
  # The SDK inside real hosts (LÖVE, Neovim, tarantool, HAProxy, mpv): each
  # spec starts the host, runs the main job in it and measures its loop.
  if [ -d spec/hosts ]; then run_suite hosts lua5.4 "$@" spec/hosts; fi
  # The other supported Lua versions: the C core and the unit specs.
  run_suite lua5.3 lua5.3 "$@" spec/core spec/unit
  run_suite lua5.2 lua5.2 "$@" spec/core spec/unit
  run_suite lua5.1 lua5.1 "$@" spec/core spec/unit
fi

awk '{ p += $2; f += $3; s += $4 } END {
  printf "%d passed, %d failed", p, f; if (s > 0) printf ", %d skipped", s; printf "\n" }' "$SUMMARY"
[ "$rc" -eq 0 ] && ! awk '$3 > 0 { bad = 1 } END { exit !bad }' "$SUMMARY"
