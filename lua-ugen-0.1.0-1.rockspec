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
  "luasocket",  -- ugen webhook listen (CLI) and the sandbox controller
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
    ["ugen.args"] = "lua/ugen/args.lua",
    ["ugen.batch"] = "lua/ugen/batch/init.lua",
    ["ugen.batch.input"] = "lua/ugen/batch/input.lua",
    ["ugen.batch.journal"] = "lua/ugen/batch/journal.lua",
    ["ugen.call"] = "lua/ugen/call.lua",
    ["ugen.cli"] = "lua/ugen/cli/init.lua",
    ["ugen.cli.args"] = "lua/ugen/cli/args.lua",
    ["ugen.cli.cmd_batch"] = "lua/ugen/cli/cmd_batch.lua",
    ["ugen.cli.cmd_credits"] = "lua/ugen/cli/cmd_credits.lua",
    ["ugen.cli.cmd_endpoints"] = "lua/ugen/cli/cmd_endpoints.lua",
    ["ugen.cli.cmd_jobs"] = "lua/ugen/cli/cmd_jobs.lua",
    ["ugen.cli.cmd_models"] = "lua/ugen/cli/cmd_models.lua",
    ["ugen.cli.cmd_sandbox"] = "lua/ugen/cli/cmd_sandbox.lua",
    ["ugen.cli.cmd_webhook"] = "lua/ugen/cli/cmd_webhook.lua",
    ["ugen.cli.cmd_webhooks"] = "lua/ugen/cli/cmd_webhooks.lua",
    ["ugen.cli.context"] = "lua/ugen/cli/context.lua",
    ["ugen.cli.listen"] = "lua/ugen/cli/listen.lua",
    ["ugen.cli.output"] = "lua/ugen/cli/output.lua",
    ["ugen.cli.pages"] = "lua/ugen/cli/pages.lua",
    ["ugen.cli.params"] = "lua/ugen/cli/params.lua",
    ["ugen.cli.progress"] = "lua/ugen/cli/progress.lua",
    ["ugen.client"] = "lua/ugen/client.lua",
    ["ugen.clock"] = "lua/ugen/clock.lua",
    ["ugen.cluster.notify"] = "lua/ugen/cluster/notify.lua",
    ["ugen.cluster.redis"] = "lua/ugen/cluster/redis.lua",
    ["ugen.crypto"] = "lua/ugen/crypto.lua",
    ["ugen.endpoints"] = "lua/ugen/endpoints.lua",
    ["ugen.errors"] = "lua/ugen/errors.lua",
    ["ugen.headers"] = "lua/ugen/headers.lua",
    ["ugen"] = "lua/ugen/init.lua",
    ["ugen.json"] = "lua/ugen/json.lua",
    ["ugen.media"] = "lua/ugen/media.lua",
    ["ugen.native"] = "lua/ugen/native.lua",
    ["ugen.ngx"] = "lua/ugen/ngx.lua",
    ["ugen.pipeline"] = "lua/ugen/pipeline.lua",
    ["ugen.resources.download"] = "lua/ugen/resources/download.lua",
    ["ugen.resources"] = "lua/ugen/resources/init.lua",
    ["ugen.resources.jobs"] = "lua/ugen/resources/jobs.lua",
    ["ugen.resources.jobs_wait"] = "lua/ugen/resources/jobs_wait.lua",
    ["ugen.retry"] = "lua/ugen/retry.lua",
    ["ugen.runtime"] = "lua/ugen/runtime/init.lua",
    ["ugen.runtime.curl"] = "lua/ugen/runtime/curl.lua",
    ["ugen.runtime.ngx"] = "lua/ugen/runtime/ngx.lua",
    ["ugen.runtime.tarantool"] = "lua/ugen/runtime/tarantool.lua",
    ["ugen.runtime.luv"] = "lua/ugen/runtime/luv.lua",
    ["ugen.runtime.haproxy"] = "lua/ugen/runtime/haproxy.lua",
    ["ugen.runtime.loop"] = "lua/ugen/runtime/loop.lua",
    ["ugen.runtime.task"] = "lua/ugen/runtime/task.lua",
    ["ugen.runtime.timer_heap"] = "lua/ugen/runtime/timer_heap.lua",
    ["ugen.runtime.transfers"] = "lua/ugen/runtime/transfers.lua",
    ["ugen.sandbox"] = "lua/ugen/sandbox/init.lua",
    ["ugen.sandbox.locate"] = "lua/ugen/sandbox/locate.lua",
    ["ugen.sandbox.nginx"] = "lua/ugen/sandbox/nginx.lua",
    ["ugen.sandbox.sys"] = "lua/ugen/sandbox/sys.lua",
    ["ugen.sandbox.tls"] = "lua/ugen/sandbox/tls.lua",
    ["ugen.transport.body_sink"] = "lua/ugen/transport/body_sink.lua",
    ["ugen.transport.curl"] = "lua/ugen/transport/curl.lua",
    ["ugen.transport.http1"] = "lua/ugen/transport/http1.lua",
    ["ugen.transport.http1_client"] = "lua/ugen/transport/http1_client.lua",
    ["ugen.transport.haproxy"] = "lua/ugen/transport/haproxy.lua",
    ["ugen.transport"] = "lua/ugen/transport/init.lua",
    ["ugen.transport.multipart"] = "lua/ugen/transport/multipart.lua",
    ["ugen.transport.ngx"] = "lua/ugen/transport/ngx.lua",
    ["ugen.url"] = "lua/ugen/url.lua",
    ["ugen.observe"] = "lua/ugen/observe.lua",
    ["ugen.validate"] = "lua/ugen/validate.lua",
    ["ugen.webhook"] = "lua/ugen/webhook.lua",
    ["ugen.core"] = {
      sources = {
        "csrc/ugen_core.c",
        "csrc/ugen_engine.c",
        "csrc/ugen_err.c",
        "csrc/ugen_hdr.c",
        "csrc/ugen_hmac.c",
        "csrc/ugen_json.c",
        "csrc/ugen_loop.c",
        "csrc/ugen_mime.c",
        "csrc/ugen_output.c",
        "csrc/ugen_random.c",
        "csrc/ugen_request.c",
        "csrc/ugen_result.c",
        "csrc/ugen_time.c",
        "csrc/ugen_transfer.c",
        "csrc/ugen_url.c",
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
  copy_directories = { "examples", "sandbox", "csrc" },
  platforms = {
    windows = {
      modules = {
        ["ugen.core"] = { libraries = { "libcurl", "libcrypto" } },
      },
    },
  },
}
