-- luacheck: globals ngx
-- nginx side of spec/nginx/hardening_download_spec.lua: runs SDK calls inside
-- nginx (the ngx transport, chosen automatically) against the spec's hostile
-- servers and answers what came back.
--   POST /run {op = "download" | "request" | "max_body", base_url =, api_key =, headers =,
--              url =, path =, opts =, params =, max_body =}
local ugen = require "ugen"
local json = require "ugen.json"
local ngx_transport = require "ugen.transport.ngx"

local _M = {}

local DEFAULT_MAX_BODY = ngx_transport.MAX_BODY

local function reply(t)
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(t))
end

local function now() ngx.update_time(); return ngx.now() end

function _M.run()
  ngx.req.read_body()
  local spec = json.decode(ngx.req.get_body_data() or "{}", true) or {}
  if spec.op == "max_body" then
    return reply{ max_body = DEFAULT_MAX_BODY, transport = ugen.new{ base_url = "http://127.0.0.1/" }.transport_name }
  end
  local c = ugen.new{ base_url = spec.base_url, api_key = spec.api_key, headers = spec.headers,
                      max_retries = spec.max_retries or 0, rng = function() return 0 end }
  if spec.max_body then ngx_transport.MAX_BODY = spec.max_body end
  local t0 = now()
  local ok, r, err = pcall(function()
    if spec.op == "download" then
      return c.jobs:download({ job_id = "j", final_video_url = spec.url }, spec.path, spec.opts)
    end
    return c:request("GET", spec.path, spec.params, spec.opts)
  end)
  ngx_transport.MAX_BODY = DEFAULT_MAX_BODY
  if not ok then return reply{ raised = tostring(r) } end
  reply{
    ok = r ~= nil, result = r, elapsed = now() - t0, transport = c.transport_name,
    err = err and { kind = err.kind, code = err.code, message = err.message, retryable = err.retryable,
                    attempts = err.attempts, part_bytes = err.part_bytes, status = err.status } or nil,
  }
end

return _M
