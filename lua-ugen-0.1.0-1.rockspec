rockspec_format = "3.0"
package = "lua-ugen"
version = "0.1.0-1"
source = {
  url = "git+https://github.com/lua-ugen/lua-ugen.git",
  tag = "v0.1.0",
}
description = {
  summary = "Lua SDK for the U-Gen REST API (AI UGC product videos)",
  detailed = [[
    Create U-Gen video jobs, follow them through the pipeline, download the
    final video, estimate and track credits, and verify signed webhooks.
    A small C core (libcurl, OpenSSL) under a plain-Lua API; coroutine-friendly
    polling; an OpenResty cosocket transport; a local sandbox server.
  ]],
  homepage = "https://github.com/lua-ugen/lua-ugen",
  license = "MIT",
  labels = { "http", "api", "sdk", "video", "webhook", "openresty" },
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1.0",
}
-- Library-only checks: Debian keeps curl.h under a multiarch include dir
-- that the compiler searches by default but LuaRocks' header probe does not.
external_dependencies = {
  CURL = { library = "curl" },
  OPENSSL = { library = "crypto" },
}
test_dependencies = { "busted" }
test = { type = "busted" }
build = {
  type = "builtin",
  modules = {
    ["ugen.core"] = {
      sources = {
        "csrc/ugen_core.c",
      },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      defines = { "_POSIX_C_SOURCE=200809L" },
    },
  },
  install = {
    bin = { ugen = "bin/ugen" },
  },
  copy_directories = { "examples", "sandbox" },
  platforms = {
    windows = {
      modules = {
        ["ugen.core"] = { libraries = { "libcurl", "libcrypto" } },
      },
    },
  },
}
