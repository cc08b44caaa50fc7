-- busted helper: TLS material and small TLS servers for specs. Certificates
-- come from the sandbox's own machinery (ugen.sandbox.tls: the openssl CLI,
-- EC P-256 keys, so a set costs well under a second) and are made ONCE per
-- CA per busted run.
--
--   local T = require "support.tls"
--   local ca = assert(require("ugen.sandbox").tls.ca(info.dir .. "/tls"))  -- e.g. a TLS sandbox's CA
--   local c = T.certs(ca)
--   -- c.good       { key =, cert = }  IP:127.0.0.1, DNS:localhost, signed by ca
--   -- c.wrong_ca   { key =, cert = }  the same names, signed by another CA (c.other_ca.cert)
--   -- c.wrong_host { key =, cert = }  DNS:example.test only (no IP SAN), signed by ca
--   -- c.expired    { key =, cert = }  the same names as good, signed by ca, valid only
--   --                                  2020-01-01 to 2020-01-02
--   local srv = T.server{ good = c.good, expired = c.expired }   -- one nginx, one TLS port per cert
--   -- srv.port.good, srv.https("good", "/hook") (https://127.0.0.1:PORT/hook),
--   -- srv.https("good", "/hook", "localhost")
--   -- every TLS port ("listen ... ssl http2"):
--   --   POST /hook     records the request (headers, body) and answers 200 "ok"
--   --   anything else  200 {"ok":true} (a stand-in API for the SDK)
--   -- srv.received() -> list of { server = name, headers = {lowercase = value}, body = }
--   --                   (read over a plain HTTP port of the same nginx)
--   -- srv.stop()     (support.nginx also stops it at the end of the run)
local sandbox = require "ugen.sandbox"
local N = require "support.nginx"

local M = {}

local cache = {}

-- -> the certificate set for ca (made on the first call for that CA)
function M.certs(ca)
  assert(type(ca) == "table" and ca.dir, "support.tls.certs: a CA from ugen.sandbox.tls.ca expected")
  if cache[ca.dir] then return cache[ca.dir] end
  local tls = sandbox.tls
  -- the sandbox's own names unless o.dns says otherwise
  local function issue(c, name, o)
    o = o or {}
    o.name = name
    if not o.dns then o.dns, o.ip = { "localhost" }, { "127.0.0.1" } end
    return assert(tls.issue(c, o))
  end
  local other = assert(tls.ca(N.tmpdir() .. "/other-ca", { cn = "Some Other CA" }))
  local set = {
    other_ca = other,
    good = issue(ca, "spec-good"),
    wrong_ca = issue(other, "spec-wrong-ca"),
    wrong_host = issue(ca, "spec-wrong-host", { dns = { "example.test" } }),
    expired = issue(ca, "spec-expired", { not_before = "20200101000000Z", not_after = "20200102000000Z" }),
  }
  cache[ca.dir] = set
  return set
end

local RECORD = [[
      ngx.req.read_body()
      local body = ngx.req.get_body_data()
      if not body and ngx.req.get_body_file() then
        local f = io.open(ngx.req.get_body_file(), "rb"); body = f:read("*a"); f:close()
      end
      local rec = require("ugen.json").encode({ server = "%s", headers = ngx.req.get_headers(),
                                                 body = body or "" })
      local d = ngx.shared.spec_tls_hooks
      local n = d:incr("n", 1, 0)
      d:set("r" .. n, rec)
      ngx.say("ok")
]]

--- One nginx with a TLS port per certificate: certs = { name = { key =, cert = }, ... }
function M.server(certs)
  local names = {}
  for name in pairs(certs) do
    assert(name:find("^[%w_]+$"), "support.tls.server: plain names expected")
    names[#names + 1] = name
  end
  table.sort(names)
  local blocks = { "  lua_shared_dict spec_tls_hooks 1m;" }
  for i, name in ipairs(names) do
    blocks[#blocks + 1] = ([[
  server {
    listen 127.0.0.1:${PORT%d} ssl http2;
    ssl_certificate "%s";
    ssl_certificate_key "%s";
    location = /hook { content_by_lua_block {
%s
    } }
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }]]):format(i, certs[name].cert, certs[name].key, RECORD:format(name))
  end
  blocks[#blocks + 1] = ([[
  server {
    listen 127.0.0.1:${PORT%d};
    location = /received { content_by_lua_block {
      local d = ngx.shared.spec_tls_hooks
      local out = {}
      for i = 1, d:get("n") or 0 do out[i] = d:get("r" .. i) end
      ngx.header["Content-Type"] = "application/json"
      ngx.say("[" .. table.concat(out, ",") .. "]")
    } }
  }]]):format(#names + 1)
  local srv = N.start{ ports = #names + 1, http = table.concat(blocks, "\n") }
  srv.port = {}
  for i, name in ipairs(names) do srv.port[name] = srv.ports[i] end
  local plain = #names + 1
  function srv.https(name, path, host)
    return ("https://%s:%d%s"):format(host or "127.0.0.1", assert(srv.port[name], name), path or "/")
  end
  function srv.received()
    local r = srv.request{ path = "/received", port = plain }
    assert(r.status == 200, r.body)
    return r.json
  end
  return srv
end

return M
