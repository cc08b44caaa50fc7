#!/bin/sh
# Install the Debian packages lua-ugen needs to build, test and run the demo.
# Idempotent: prints nothing and touches nothing when everything is present.
# It includes every command the specs run (spec/support/tools.lua lists them
# with their packages; spec/unit/tools_spec.lua checks this list): a spec whose
# tool is missing fails, it is never skipped.
# Note: nginx's Lua module is built against Debian's luajit2 (the OpenResty
# fork), which conflicts with the plain "luajit" package, so we use luajit2.
set -eu

PKGS="make gcc pkg-config ca-certificates curl coreutils
lua5.4 liblua5.4-dev lua5.3 liblua5.3-dev lua5.1 liblua5.1-0-dev luajit2 libluajit2-5.1-dev
lua-cjson lua-cjson-dev lua-busted lua-check lua-socket lua-luv luarocks
libcurl4-openssl-dev libssl-dev openssl
nginx libnginx-mod-http-lua
bsdutils util-linux
valgrind cppcheck clang libclang-rt-14-dev
love xvfb xauth neovim tarantool haproxy mpv lua5.2 liblua5.2-dev
redis-server redis-tools lua-nginx-redis lua-sql-sqlite3"

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
else
  SUDO=""
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Server packages may start a default instance; the specs run their own instances only.
if command -v service >/dev/null 2>&1; then
  for s in nginx haproxy redis-server tarantool; do $SUDO service "$s" stop >/dev/null 2>&1 || true; done
fi
