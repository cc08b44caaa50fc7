# lua-ugen developer Makefile. The rockspec is the source of truth for users
# (`luarocks make`); this file is the development loop and uses the same
# variable names. See README.md ("Developing").

VERSION    := 0.1.0
CC         ?= cc
PKG_CONFIG ?= pkg-config

WARN       := -std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Werror
OPT        ?= -O2 -g
CFLAGS     ?= $(OPT)
BASE_CFLAGS = $(WARN) -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L
LIBFLAG    ?= -shared

CURL_CFLAGS    ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS      ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
OPENSSL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcrypto 2>/dev/null)
OPENSSL_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcrypto 2>/dev/null || echo -lcrypto)

# Lua headers per target interpreter (liblua itself is never linked on Linux).
LUA54_INCDIR  ?= /usr/include/lua5.4
LUA53_INCDIR  ?= /usr/include/lua5.3
LUA51_INCDIR  ?= /usr/include/lua5.1
LUAJIT_INCDIR ?= /usr/include/luajit-2.1

SRCS := $(sort $(wildcard csrc/*.c))
HDRS := $(wildcard csrc/*.h)

# Outputs side by side: build/<lua>/ugen/core.so
TARGETS := build/5.4/ugen/core.so build/luajit/ugen/core.so build/5.1/ugen/core.so

.PHONY: all deps build test check asan valgrind cppcheck strict luacheck demo sandbox sandbox-stop \
        soak bench fuzz clean rock

all: build

deps:
	@sh scripts/deps.sh

build: $(TARGETS)

define core_rule
build/$(1)/ugen/core.so: $$(SRCS) $$(HDRS) Makefile
	@mkdir -p $$(@D)
	$$(CC) $$(BASE_CFLAGS) $$(CFLAGS) -I$(2) $$(CURL_CFLAGS) $$(OPENSSL_CFLAGS) $$(SRCS) \
	  $$(LIBFLAG) -o $$@ $$(CURL_LIBS) $$(OPENSSL_LIBS) $$(LDFLAGS)
endef
$(eval $(call core_rule,5.4,$(LUA54_INCDIR)))
$(eval $(call core_rule,5.3,$(LUA53_INCDIR)))
$(eval $(call core_rule,5.1,$(LUA51_INCDIR)))
$(eval $(call core_rule,luajit,$(LUAJIT_INCDIR)))

# The whole suite: C core, Lua specs on 5.4 and LuaJIT, sandbox and nginx
# integration. Last line: "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory build
	@sh scripts/test.sh

# Strict compiles, ASan+UBSan and valgrind runs of spec/core + spec/unit,
# cppcheck, luacheck; non-zero on any finding. See scripts/check.sh.
# Single steps: make asan | valgrind | cppcheck | strict; suites: CHECK_SPECS=...
CHECK_SPECS ?= spec/core spec/unit

check: deps
	@$(MAKE) --no-print-directory build
	@UGEN_CHECK_SPECS="$(CHECK_SPECS)" sh scripts/check.sh

asan valgrind cppcheck strict:
	@UGEN_CHECK_SPECS="$(CHECK_SPECS)" sh scripts/check.sh $@

luacheck:
	@luacheck -q lua spec sandbox examples bench bin/ugen

demo: deps
	@$(MAKE) --no-print-directory build
	@sh scripts/demo.sh

sandbox: deps
	@$(MAKE) --no-print-directory build
	@bin/ugen sandbox start

sandbox-stop:
	@bin/ugen sandbox stop

clean:
	rm -rf build luacov.* *.rock
