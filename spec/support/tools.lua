-- spec/support/tools.lua: the external commands the specs run, with the Debian
-- package that provides each. scripts/deps.sh (make deps) installs them all, so
-- a missing one FAILS the spec that needs it: no block is skipped quietly.
--   local tools = require "support.tools"
--   tools.need("openssl")    -- raises "openssl is not installed (...)" when absent
local M = {}

M.PACKAGES = {
  openssl = "openssl",      -- certificates and s_server (spec/core/http_spec.lua, spec/support/nginx.lua), dgst
  script = "bsdutils",      -- a real pty for the CLI (spec/integration/cli_spec.lua)
  setsid = "util-linux",    -- the demo in its own process group (spec/integration/cli_spec.lua)
  curl = "curl",            -- requests from outside the SDK (spec/support/sandbox.lua, cli_spec.lua)
  nginx = "nginx",          -- the sandbox and the OpenResty specs
  luarocks = "luarocks",    -- `luarocks make` (spec/unit/rockspec_spec.lua)
  ["lua5.4"] = "lua5.4",    -- spec/support/httpd.lua always runs on 5.4
  busted = "lua-busted",    -- scripts/test.sh, and spec/unit/summary_spec.lua runs it on small specs
  cc = "gcc",               -- a test-only C module (spec/integration/forced_yield_spec.lua)
  -- the real hosts of spec/hosts (each spec starts and stops its own)
  love = "love",            -- LÖVE 11 (LuaJIT), under xvfb-run
  ["xvfb-run"] = "xvfb",    -- a virtual X display for LÖVE
  nvim = "neovim",          -- Neovim 0.7 (LuaJIT, luv) --headless
  tarantool = "tarantool",  -- tarantool 2.6 (LuaJIT, fibers)
  haproxy = "haproxy",      -- HAProxy 2.6 (Lua 5.3)
  mpv = "mpv",              -- mpv 0.35 (Lua 5.2)
  ["lua5.2"] = "lua5.2",    -- the 5.2 core's unit specs
  ["lua5.1"] = "lua5.1",    -- plain luv programs on each Lua (spec/hosts/luv_spec.lua)
  ["lua5.3"] = "lua5.3",
  luajit = "luajit2",
  timeout = "coreutils",    -- a hung host (spec/hosts/love_spec.lua, mpv_spec.lua) is killed, not waited for
  ["redis-server"] = "redis-server",  -- the cluster store (spec/support/redis.lua, spec/nginx/cluster_spec.lua)
  ["redis-cli"] = "redis-tools",      -- commands to that server from the specs
}

-- the command's path, or nil when `name` is not a command on PATH
function M.have(name)
  local p = io.popen("command -v '" .. name:gsub("'", "") .. "' 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  return out:match("^(/%S+)") or nil
end

-- the command's path; raises (naming the package and the fix) when it is missing
function M.need(name)
  local path = M.have(name)
  if not path then
    error(("%s is not installed (Debian package %s): run scripts/deps.sh (make deps)")
      :format(name, M.PACKAGES[name] or "?"), 2)
  end
  return path
end

return M
