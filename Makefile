# lua-ugen developer Makefile. The rockspec is the source of truth for users
# (`luarocks make`); this file is the development loop and uses the same
# variable names. See docs/developing.md.

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
LUA52_INCDIR  ?= /usr/include/lua5.2
LUA51_INCDIR  ?= /usr/include/lua5.1
LUAJIT_INCDIR ?= /usr/include/luajit-2.1

SRCS := $(sort $(wildcard csrc/*.c))
HDRS := $(wildcard csrc/*.h)

# Outputs side by side: build/<lua>/ugen/core.so
TARGETS := build/5.4/ugen/core.so build/luajit/ugen/core.so build/5.1/ugen/core.so build/5.3/ugen/core.so \
           build/5.2/ugen/core.so

.PHONY: all deps build test check asan valgrind cppcheck strict luacheck demo sandbox sandbox-stop \
        asan-integration valgrind-integration \
        soak bench fuzz clean rock env

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
$(eval $(call core_rule,5.2,$(LUA52_INCDIR)))
$(eval $(call core_rule,5.1,$(LUA51_INCDIR)))
$(eval $(call core_rule,luajit,$(LUAJIT_INCDIR)))

# The whole suite: C core, Lua specs on 5.4 and LuaJIT, sandbox and nginx
# integration. Last line: "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory build
	@sh scripts/test.sh

# Strict compiles, ASan+UBSan and valgrind runs of spec/core + spec/unit and
# of spec/integration (sandbox), cppcheck, luacheck; non-zero on any finding.
# About 6 minutes on 2 cores. See scripts/check.sh.
# Single steps: make asan | valgrind | cppcheck | strict; suites: CHECK_SPECS=...
CHECK_SPECS ?= spec/core spec/unit

check: deps
	@$(MAKE) --no-print-directory build
	@UGEN_CHECK_SPECS="$(CHECK_SPECS)" sh scripts/check.sh

asan valgrind cppcheck strict asan-integration valgrind-integration:
	@UGEN_CHECK_SPECS="$(CHECK_SPECS)" sh scripts/check.sh $@

luacheck:
	@luacheck -q lua spec sandbox examples bench bin/ugen

demo: deps
	@$(MAKE) --no-print-directory build
	@sh scripts/demo.sh

# stdout carries only the two export lines: eval "$(make -s sandbox)" works.
sandbox: deps
	@$(MAKE) --no-print-directory -s build >&2
	@bin/ugen sandbox start

sandbox-stop:
	@bin/ugen sandbox stop

# ---- using the clone; packing a rock ---------------------------------------

# eval "$(make -s env)": `require "ugen"` from any directory with lua5.4, and
# bin/ on PATH. Another interpreter: eval "$(make -s env LUA=luajit)" (or
# lua5.3, lua5.2, lua5.1). Builds that interpreter's core first (its output on stderr).
# Lua 5.2-5.4 read LUA_PATH_5_x before LUA_PATH, so the 5.4 and the LuaJIT
# exports live side by side; an existing value is kept after the clone's paths.
LUA     ?= lua5.4
ENV_SUB  = $(if $(filter luajit,$(LUA)),luajit,$(patsubst lua%,%,$(LUA)))
ENV_SFX  = $(if $(filter 5.2 5.3 5.4,$(ENV_SUB)),_$(subst .,_,$(ENV_SUB)))
# the previous value of $(1) (LUA_PATH or LUA_CPATH) in shell syntax, else ";" (the defaults)
ENV_PREV = $(if $(ENV_SFX),\$${$(1)$(ENV_SFX):-\$${$(1):-;}},\$${$(1):-;})

env:
	@case "$(ENV_SUB)" in 5.1|5.2|5.3|5.4|luajit) ;; \
	  *) echo "make env: LUA must be lua5.4, lua5.3, lua5.2, lua5.1 or luajit (got $(LUA))" >&2; exit 2;; esac
	@$(MAKE) --no-print-directory -s build/$(ENV_SUB)/ugen/core.so >&2
	@d='$(CURDIR)'; \
	  echo "export LUA_PATH$(ENV_SFX)=\"$$d/lua/?.lua;$$d/lua/?/init.lua;$(call ENV_PREV,LUA_PATH)\""; \
	  echo "export LUA_CPATH$(ENV_SFX)=\"$$d/build/$(ENV_SUB)/?.so;$(call ENV_PREV,LUA_CPATH)\""; \
	  echo "export PATH=\"$$d/bin:\$$PATH\""

# make rock: a binary rock built offline from this clone for Lua ROCK_LUA (5.4;
# ROCK_LUA=5.1 for LuaJIT/OpenResty), in build/rock/<v>/ (its path is the last
# line). Install it without network: luarocks --lua-version <v> install
# --deps-mode=none build/rock/<v>/lua-ugen-*.rock (lua-cjson and luasocket
# from the system, or add them as rocks).
ROCK_LUA ?= 5.4

rock:
	@rm -rf build/rock/$(ROCK_LUA) && mkdir -p build/rock/$(ROCK_LUA)
	@luarocks --lua-version $(ROCK_LUA) --tree build/rock/$(ROCK_LUA)/tree make --deps-mode=none \
	  lua-ugen-$(VERSION)-1.rockspec >&2
	@rm -f csrc/*.o build/rock/$(ROCK_LUA)/tree/lib/luarocks/rocks-$(ROCK_LUA)/lua-ugen/*/csrc/*.o
	@cd build/rock/$(ROCK_LUA) && luarocks --lua-version $(ROCK_LUA) --tree tree pack lua-ugen $(VERSION)-1 >&2
	@rm -rf build/rock/$(ROCK_LUA)/tree && ls "$(CURDIR)"/build/rock/$(ROCK_LUA)/lua-ugen-$(VERSION)-1.*.rock

# ---- proof: soak, bench, fuzz (issue 8) -----------------------------------

# The full fault soak: 1,000 sequential + 200 concurrent job creates under ~20%
# injected faults against a private sandbox (spec/soak/; the short version runs
# in make test as spec/integration/soak_short_spec.lua). SOAK_INTERPS picks the
# interpreters (default lua5.4 luajit).
SOAK_INTERPS ?= lua5.4 luajit

soak: deps
	@$(MAKE) --no-print-directory build
	@set -e; for i in $(SOAK_INTERPS); do echo "== soak: $$i"; \
	  $$i $$(command -v busted) --tags=soak -o utfTerminal spec/soak; done

# Benchmarks: each script prints ratios against a baseline measured in the
# same run (bench/run.sh; C baselines built into build/bench/).
BENCH_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror

build/bench/raw_curl: bench/raw_curl.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(CURL_CFLAGS) $< -o $@ $(CURL_LIBS)

build/bench/raw_hmac: bench/raw_hmac.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(OPENSSL_CFLAGS) $< -o $@ $(OPENSSL_LIBS)

bench: deps
	@$(MAKE) --no-print-directory build build/bench/raw_curl build/bench/raw_hmac
	@sh bench/run.sh

# libFuzzer targets (clang -fsanitize=fuzzer,address,undefined) over the C
# entry points that parse outside input; each runs FUZZ_SECONDS on its
# committed corpus fuzz/corpus/<target>/ (new finds go to build/fuzz/corpus/).
FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_TARGETS := fuzz_header fuzz_hmac
FUZZ_FLAGS    = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -D_POSIX_C_SOURCE=200809L -I csrc
FUZZ_LUA_INC ?= $(LUA54_INCDIR)
FUZZ_LUA_LIB ?= -llua5.4

build/fuzz/fuzz_header: fuzz/fuzz_header.c csrc/ugen_hdr.c $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -I$(FUZZ_LUA_INC) $(CURL_CFLAGS) fuzz/fuzz_header.c csrc/ugen_hdr.c -o $@

build/fuzz/fuzz_hmac: fuzz/fuzz_hmac.c $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -I$(FUZZ_LUA_INC) $(CURL_CFLAGS) $(OPENSSL_CFLAGS) fuzz/fuzz_hmac.c $(SRCS) \
	  -o $@ $(FUZZ_LUA_LIB) $(CURL_LIBS) $(OPENSSL_LIBS) -lm

fuzz: $(addprefix build/fuzz/,$(FUZZ_TARGETS))
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh $(FUZZ_TARGETS)

clean:
	rm -rf build luacov.* *.rock csrc/*.o
