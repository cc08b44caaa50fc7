#!/bin/sh
# make check: the C core and the Lua specs under every checker we have.
#   strict   clang -pedantic -Werror builds against Lua 5.1, 5.4 and LuaJIT headers
#   asan     ASan+UBSan build of ugen.core (build/asan/ugen/core.so); spec/core and
#            spec/unit run on lua5.4 with the ASan runtime preloaded, leak checking on
#   valgrind memcheck over the same suites with the normal build (definite and
#            indirect leaks and every memory error fail)
#   asan-integration  spec/integration (sandbox on nginx) on a sanitized Lua host
#            (build/asan/lua from scripts/lua_host.c): ~2 min
#   valgrind-integration  memcheck over spec/integration: ~3 min
#            (UGEN_CHECK_INTEGRATION_SPECS overrides the integration suites)
#   cppcheck warning,performance,portability over csrc/
#   luacheck the Lua tree
# Usage: scripts/check.sh [step...]   (default: all steps, in that order)
# Suppressions (scripts/lsan.supp, scripts/valgrind.supp) name third-party
# frames only: the lua5.4 binary, /bin/sh, libcurl/OpenSSL global state.
# Exits non-zero if any step finds anything.
set -u
cd "$(dirname "$0")/.."

SPECS=${UGEN_CHECK_SPECS:-"spec/core spec/unit"}
STEPS=${*:-"strict asan asan-integration valgrind valgrind-integration cppcheck luacheck"}
BUSTED=$(command -v busted)
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
CURL_CFLAGS=$($PKG_CONFIG --cflags libcurl 2>/dev/null)
CURL_LIBS=$($PKG_CONFIG --libs libcurl 2>/dev/null || echo -lcurl)
OPENSSL_CFLAGS=$($PKG_CONFIG --cflags libcrypto 2>/dev/null)
OPENSSL_LIBS=$($PKG_CONFIG --libs libcrypto 2>/dev/null || echo -lcrypto)
LUA54_INCDIR=${LUA54_INCDIR:-/usr/include/lua5.4}
SRCS=$(ls csrc/*.c)
WARN="-std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Werror"

rc=0
failed=""
note() { printf '\n== check: %s\n' "$*"; }
fail() { echo "!! check: $1 FAILED"; rc=1; failed="$failed $1"; }
have() { command -v "$1" >/dev/null 2>&1; }

step_strict() {
  note "strict compiles (clang -pedantic -Wcast-qual, each Lua API)"
  cc=${CC_STRICT:-clang}
  have "$cc" || cc=cc
  for inc in /usr/include/lua5.1 /usr/include/lua5.2 /usr/include/luajit-2.1 "$LUA54_INCDIR"; do
    [ -d "$inc" ] || continue
    # shellcheck disable=SC2086
    if ! $cc $WARN -pedantic -Wcast-qual -Wpointer-arith -Wformat=2 -Wundef \
        -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L -O2 -I"$inc" \
        $CURL_CFLAGS $OPENSSL_CFLAGS -fsyntax-only $SRCS; then
      fail "strict($inc)"
    fi
  done
}

step_asan_build() {
  note "ASan+UBSan build -> build/asan/ugen/core.so"
  cc=${CC_SAN:-gcc}
  case $($cc --version 2>/dev/null | head -n 1) in
    *clang*) san_extra=-shared-libasan ;;
    *) san_extra= ;;
  esac
  mkdir -p build/asan/ugen
  # shellcheck disable=SC2086
  if ! $cc $WARN -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L -O1 -g $san_extra \
      -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
      -I"$LUA54_INCDIR" $CURL_CFLAGS $OPENSSL_CFLAGS $SRCS -shared \
      -o build/asan/ugen/core.so $CURL_LIBS $OPENSSL_LIBS; then
    fail asan-build
    return 1
  fi
}

step_asan() {
  step_asan_build || return
  cc=${CC_SAN:-gcc}
  # the ASan runtime is preloaded into the (uninstrumented) lua5.4 binary
  case $($cc --version 2>/dev/null | head -n 1) in
    *clang*) rt_name=libclang_rt.asan-x86_64.so ;;
    *) rt_name=libasan.so ;;
  esac
  asan_rt=$($cc -print-file-name=$rt_name)
  if [ ! -f "$asan_rt" ]; then
    fail "asan (no runtime $asan_rt)"
    return
  fi
  note "ASan+UBSan: lua5.4 busted $SPECS"
  # shellcheck disable=SC2086
  if ! env LD_PRELOAD="$asan_rt" \
      ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23:detect_stack_use_after_return=0:strict_string_checks=0" \
      LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
      UGEN_BUILD_DIR=build/asan UGEN_TIME_FACTOR=4 \
      lua5.4 "$BUSTED" -o utfTerminal $SPECS; then
    fail asan
  fi
}

# The integration suites (sandbox on nginx, curl subprocesses) under ASan+UBSan: the ASan
# runtime must not be LD_PRELOADed there (nginx and curl would inherit it and report their own
# leaks at exit), so the specs run on a sanitized Lua host instead (scripts/lua_host.c linked
# with liblua5.4.a and the sanitizer runtime); the children run unsanitized.
INTEG_SPECS=${UGEN_CHECK_INTEGRATION_SPECS:-"spec/integration"}
step_asan_integration() {
  note "ASan+UBSan Lua host -> build/asan/lua; busted $INTEG_SPECS"
  cc=${CC_SAN:-gcc}
  if [ ! -f build/asan/ugen/core.so ] || [ -n "$(find csrc -newer build/asan/ugen/core.so 2>/dev/null)" ]; then
    step_asan_build || return
  fi
  lualib=${LUA54_STATIC:-/usr/lib/x86_64-linux-gnu/liblua5.4.a}
  # shellcheck disable=SC2086
  if ! $cc -std=c99 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
      -I"$LUA54_INCDIR" scripts/lua_host.c -o build/asan/lua -Wl,-E "$lualib" -lm -ldl; then
    fail asan-host-build
    return
  fi
  # shellcheck disable=SC2086
  if ! env ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23:detect_stack_use_after_return=0" \
      LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
      UGEN_BUILD_DIR=build/asan UGEN_TIME_FACTOR=4 \
      build/asan/lua "$BUSTED" -o utfTerminal $INTEG_SPECS; then
    fail asan-integration
  fi
}

step_valgrind() {
  note "valgrind memcheck: lua5.4 busted $SPECS (build/5.4)"
  if ! have valgrind; then fail "valgrind (not installed)"; return; fi
  make --no-print-directory build/5.4/ugen/core.so >/dev/null || { fail valgrind-build; return; }
  # shellcheck disable=SC2086
  if ! env UGEN_TIME_FACTOR=15 valgrind -q --tool=memcheck --leak-check=full \
      --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
      --error-exitcode=1 --num-callers=30 --suppressions=scripts/valgrind.supp \
      lua5.4 "$BUSTED" -o utfTerminal $SPECS; then
    fail valgrind
  fi
}

step_cppcheck() {
  note "cppcheck csrc/"
  if ! have cppcheck; then fail "cppcheck (not installed)"; return; fi
  # System headers are left out on purpose (-I only for our own); the version
  # macros they would define are given so ugen_compat.h takes the real paths.
  for luav in 501 504; do
    if ! cppcheck -q --std=c99 --enable=warning,performance,portability --error-exitcode=1 \
        --inline-suppr --suppress=missingIncludeSystem -I csrc -DLUA_VERSION_NUM=$luav \
        -DLIBCURL_VERSION_NUM=0x075801 -DOPENSSL_VERSION_NUMBER=0x30000000L -D__GNUC__ csrc/; then
      fail "cppcheck(LUA_VERSION_NUM=$luav)"
    fi
  done
}

step_luacheck() {
  note "luacheck"
  if ! have luacheck; then fail "luacheck (not installed)"; return; fi
  dirs=""
  for d in lua spec sandbox examples bench bin/ugen; do [ -e "$d" ] && dirs="$dirs $d"; done
  # shellcheck disable=SC2086
  luacheck -q $dirs || fail luacheck
}

for s in $STEPS; do
  case $s in
    strict|asan|valgrind|cppcheck|luacheck) "step_$s" ;;
    asan-integration) step_asan_integration ;;
    valgrind-integration) saved_specs=$SPECS; SPECS=$INTEG_SPECS; step_valgrind; SPECS=$saved_specs ;;
    *) echo "unknown step: $s" >&2; rc=2 ;;
  esac
done

if [ "$rc" -eq 0 ]; then
  printf '\ncheck: all clean (%s)\n' "$STEPS"
else
  printf '\ncheck: FAILED:%s\n' "$failed"
fi
exit "$rc"
