-- Lua-level fuzzing of every place the SDK parses outside input (seeded, bounded, repeatable):
--   * ugen.webhook.verify: random header tables (every supported shape), timestamps, signatures
--     and bodies, plus correctly signed bodies with one mutation;
--   * the response decoder and error mapper: client calls over a function transport that answers
--     random statuses, header lists/maps (Retry-After, X-Request-Id, ...) and bodies, or random
--     transport errors, with the pipeline's retries and Retry-After waits on (waits recorded,
--     not slept);
--   * the pure parsers under them: headers.new, retry.parse_retry_after, webhook.parse_timestamp,
--     json.decode.
-- Properties: nothing raises, nothing hangs (an instruction budget per call turns a hang into a
-- failure), results are a value or `nil, err` with err an ugen error of a documented kind, waits
-- are bounded, and no secret reaches an error string. (json.decode's null/integer rule is checked
-- against literal tables in json_spec.lua.) The C parsers are fuzzed by fuzz/ (make fuzz).
-- UGEN_FUZZ_ITERATIONS scales the loops (default 1500 each), UGEN_FUZZ_SEED picks the seed.
local ugen = require "ugen"
local webhook = require "ugen.webhook"
local errors = require "ugen.errors"
local headers = require "ugen.headers"
local retry = require "ugen.retry"
local json = require "ugen.json"
local clock = require("ugen").scheduler

local ITER = tonumber(os.getenv("UGEN_FUZZ_ITERATIONS") or "") or 1500
local SEED = tonumber(os.getenv("UGEN_FUZZ_SEED") or "") or 20261123
local API_KEY = "ugen_sk_test_fuzz_0123456789abcdef0123456789abcdef"
local SECRET = "whsec_fuzz_secret_value_0123456789"
local BUDGET = 20000000 -- VM instructions per call before it counts as a hang

-- Park-Miller: the same sequence on every Lua version
local function new_rng(seed)
  local state = seed % 2147483647
  if state <= 0 then state = state + 2147483646 end
  local r = {}
  function r.int(a, b)
    state = (state * 16807) % 2147483647
    return a + state % (b - a + 1)
  end
  function r.chance(p) return r.int(1, 1000000) <= p * 1000000 end
  function r.pick(list) return list[r.int(1, #list)] end
  function r.bytes(n)
    local t = {}
    for i = 1, n do t[i] = string.char(r.int(0, 255)) end
    return table.concat(t)
  end
  return r
end

local ALPHABET = { "0", "1", "9", "a", "f", "F", "z", " ", "\t", ",", ";", "=", ".", "-", "+", ":", "T", "Z",
  "\"", "{", "}", "[", "]", "\\", "null", "true", "e", "E", "%", "\0", "\r\n", "\255", "sha256=", "v1=", "GMT",
  "Sun, ", "Nov", "1994", "08:49:37", "2026-05-02T09:12:44", "99999999999999999999", "-1", "1e308", "nan" }

local function junk(r, maxlen)
  local n = r.int(0, maxlen)
  if r.chance(0.3) then return r.bytes(n) end
  local t = {}
  for i = 1, n do t[i] = r.pick(ALPHABET) end
  return table.concat(t)
end

local pack = table.pack or function(...) return { n = select("#", ...), ... } end -- luacheck: ignore 143

-- run fn(...) with a hang budget; returns pcall's results packed
local function guarded(fn, ...)
  debug.sethook(function() error("fuzz: call exceeded its instruction budget (hang?)", 2) end, "", BUDGET)
  local res = pack(pcall(fn, ...))
  debug.sethook()
  return res
end

local KIND_SET = {}
for _, k in ipairs(errors.KINDS) do KIND_SET[k] = true end

local function assert_error(err, ctx, allowed)
  assert(ugen.is_error(err), "not an ugen error: " .. tostring(err) .. " " .. ctx)
  assert(KIND_SET[err.kind], "unknown kind " .. tostring(err.kind) .. " " .. ctx)
  if allowed then assert(allowed[err.kind], "kind " .. err.kind .. " " .. ctx) end
  local s = tostring(err)
  assert(type(s) == "string" and s ~= "", ctx)
  assert(not s:find(API_KEY, 1, true), "API key in the error string " .. ctx)
  assert(not s:find(SECRET, 1, true), "webhook secret in the error string " .. ctx)
  assert(err.retryable == true or err.retryable == false, "retryable not boolean " .. ctx)
end

-- a header table in one of the shapes verify accepts, holding the given name/value pairs
local function header_table(r, pairs_list)
  local shape = r.int(1, 5)
  local h = {}
  if shape == 1 then                                  -- map, as given
    for _, p in ipairs(pairs_list) do h[p[1]] = p[2] end
  elseif shape == 2 then                              -- ngx style: lowercase, repeated -> list
    for _, p in ipairs(pairs_list) do
      local k = type(p[1]) == "string" and p[1]:lower() or p[1]
      if h[k] ~= nil and r.chance(0.5) then
        h[k] = type(h[k]) == "table" and h[k] or { h[k] }
        table.insert(h[k], p[2])
      else
        h[k] = p[2]
      end
    end
  elseif shape == 3 then                              -- CGI
    for _, p in ipairs(pairs_list) do
      if type(p[1]) == "string" then h["HTTP_" .. p[1]:upper():gsub("%-", "_")] = p[2] end
    end
  elseif shape == 4 then                              -- list of pairs
    for i, p in ipairs(pairs_list) do h[i] = r.chance(0.5) and { p[1], p[2] } or { name = p[1], value = p[2] } end
    if r.chance(0.1) then h[#h + 1] = r.pick({ true, 7, "x" }) end   -- a malformed entry
  else                                                -- flat list
    for _, p in ipairs(pairs_list) do h[#h + 1] = p[1]; h[#h + 1] = p[2] end
  end
  return h
end

local function random_value(r, depth)
  depth = depth or 0
  local k = r.int(1, depth > 2 and 5 or 7)
  if k == 1 then return junk(r, 80)
  elseif k == 2 then return r.int(-1e9, 1e9) / r.pick({ 1, 7, 1000 })
  elseif k == 3 then return r.chance(0.5)
  elseif k == 4 then return json.null
  elseif k == 5 then return nil
  elseif k == 6 then
    local t = {}
    for i = 1, r.int(0, 4) do t[i] = random_value(r, depth + 1) end
    return t
  else
    local t = {}
    for _ = 1, r.int(0, 4) do t[junk(r, 8)] = random_value(r, depth + 1) end
    return t
  end
end

describe("fuzz (Lua level, seeded)", function()
  local waits = {}
  -- Retry-After and backoff waits are recorded, never slept (the client's runtime)
  local function fuzz_runtime(perform)
    return { name = "fuzz", now = clock.now, time = clock.time, perform = perform,
             sleep = function(s) waits[#waits + 1] = s end }
  end

  it("webhook.verify: random headers, timestamps, signatures and bodies never raise", function()
    local r = new_rng(SEED)
    local now = 1767225600
    local accepted = 0
    for i = 1, ITER do
      local body, ts, sig
      local mode = r.int(1, 4)
      if mode == 1 then                           -- pure junk
        body, ts, sig = junk(r, 300), junk(r, 30), junk(r, 100)
      else                                        -- a correctly signed delivery, then maybe one mutation
        body = json.encode{ event = "job.completed", job_id = junk(r, 10), n = r.int(0, 1000) }
        if mode == 3 then body = junk(r, 200) end -- signed, but not JSON
        ts = tostring(now - r.int(-400, 400))
        if r.chance(0.2) then ts = os.date("!%Y-%m-%dT%H:%M:%SZ", now - r.int(-400, 400)) end
        sig = webhook.sign(SECRET, ts, body)
        local m = r.int(1, 8)
        if m == 1 then sig = sig:upper()
        elseif m == 2 then sig = "sha256=" .. sig
        elseif m == 3 then sig = junk(r, 20) .. "," .. sig
        elseif m == 4 then body = body .. junk(r, 3)
        elseif m == 5 then ts = ts .. junk(r, 2)
        elseif m == 6 then sig = sig:sub(1, 63) .. (sig:sub(64) == "0" and "1" or "0")
        end
      end
      local list = { { "X-UGen-Signature", sig }, { "X-UGen-Timestamp", ts } }
      if r.chance(0.2) then table.remove(list, r.int(1, 2)) end
      if r.chance(0.3) then list[#list + 1] = { junk(r, 12), junk(r, 20) } end
      if r.chance(0.1) then list[#list + 1] = { "x-ugen-timestamp", junk(r, 12) } end
      if r.chance(0.05) then list[#list + 1] = { r.int(1, 5), junk(r, 5) } end       -- non-string name
      if r.chance(0.05) then list[#list + 1] = { "X-UGen-Signature", r.int(0, 9) } end -- number value
      local h = header_table(r, list)
      local opts = r.chance(0.9) and { now = now, tolerance = r.pick({ 300, 0, 1e9, false }) } or nil
      if opts and r.chance(0.25) then opts.decode = false end   -- authenticate only
      local res = guarded(webhook.verify, SECRET, h, r.chance(0.97) and body or nil, opts)
      assert(res[1], "verify raised: " .. tostring(res[2]) .. " (iteration " .. i .. ")")
      local ev, err = res[2], res[3]
      if ev ~= nil then
        if opts and opts.decode == false then
          assert(ev == true and err == nil)
        else
          assert(type(ev) == "table" and err == nil)
        end
        -- only a genuinely signed body can pass: the right signature must be among the values
        local tsv = webhook.header_values(h, "x-ugen-timestamp")[1]
        local expect = webhook.sign(SECRET, tsv, body)
        local found = false
        for _, v in ipairs(webhook.header_values(h, "x-ugen-signature")) do
          if v:lower():find(expect, 1, true) then found = true end
        end
        assert(found, "verify accepted a delivery without the right signature (iteration " .. i .. ")")
        accepted = accepted + 1
      else
        assert_error(err, "(verify, iteration " .. i .. ")", { signature = true, decode = true })
      end
    end
    assert.is_true(accepted > 0, "no delivery verified: the fuzz never reached the accept path")
  end)

  it("response decoder and error mapper: random statuses, headers, bodies, transport errors", function()
    local r = new_rng(SEED + 1)
    local STATUSES = { 200, 201, 202, 204, 299, 300, 304, 400, 401, 402, 403, 404, 405, 408, 409, 413, 415, 422,
      429, 500, 501, 502, 503, 504, 599, 100, 0, -1, 999, 200.5, "200", "abc" }
    local BODIES = {
      '{"job_id":"x","status":"queued"}', '{"error":{"code":"RATE_LIMIT_EXCEEDED","message":"slow","details":'
      .. '{"retry_after":3}}}', '{"detail":[{"type":"missing","loc":["body","x"],"msg":"Field required"}]}',
      '{"detail":"Not Found"}', '{"error":"plain"}', '{"error":{"code":12,"message":[1],"details":"x"}}',
      '{"message":"m"}', "[]", "null", "", "   ", "<html>502</html>", '{"items":[1,2,null],"total":null}',
      string.rep("[", 300) .. string.rep("]", 300), '{"a":1e999}', '{"a":"\\ud800"}', '"just a string"', "42",
      '{"error":{"details":{"retry_after":"Wed, 21 Oct 2015 07:28:00 GMT"}}}', "{" .. API_KEY .. "}",
      '{"error":{"message":"bad key ' .. API_KEY .. '"}}',
    }
    local RA = { "0", "1", "1.5", "61", "-3", "abc", "", "Wed, 21 Oct 2015 07:28:00 GMT",
      "Sun, 06 Nov 2094 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
      "99999999999999999999999", "1e5", " 2 " }
    local calls = 0
    local function transport()
      calls = calls + 1
      local k = r.int(1, 10)
      if k == 1 then
        local e = r.pick({ "network", "timeout", "tls", "decode", "io", "bogus", 7 })
        return nil, r.chance(0.8) and { kind = e, message = r.chance(0.9) and junk(r, 40) or {}, sent = r.chance(0.5),
          curl_code = r.chance(0.5) and r.int(1, 99) or nil } or junk(r, 20)
      elseif k == 2 then
        return nil, nil
      end
      local hl = {}
      for _ = 1, r.int(0, 6) do
        local name = r.pick({ "retry-after", "x-request-id", "content-type", "Retry-After", "x_request_id",
          junk(r, 10) })
        local value = name:lower():find("retry") and r.pick(RA) or junk(r, 30)
        hl[#hl + 1] = name; hl[#hl + 1] = value
      end
      local hdrs = hl
      if r.chance(0.2) then
        hdrs = header_table(r, { { "Retry-After", r.pick(RA) }, { "X-Request-Id", junk(r, 8) } })
      end
      if r.chance(0.05) then hdrs = nil end
      local body = r.chance(0.7) and r.pick(BODIES) or junk(r, 200)
      if r.chance(0.1) then body = nil end
      return { status = r.pick(STATUSES), headers = hdrs, body = body }
    end
    local c = ugen.new{ base_url = "http://127.0.0.1:9/api/v1", api_key = API_KEY, runtime = fuzz_runtime(transport),
                        max_retries = 2, rng = function() return r.int(0, 999) / 1000 end }
    local ops = {
      function() return c.jobs:get("job-" .. r.int(1, 9)) end,
      function() return c.credits:balance() end,
      function() return c.jobs:list{ page = r.int(1, 3) } end,
      function() return c.jobs:create{ product_name = "p", product_image_url = "https://e.com/x.png",
                                       segment_count = 1 } end,
      function() return c:request("GET", "/anything", { q = junk(r, 5) }) end,
      function() return c:request("POST", "/templates", { name = junk(r, 5) }) end,
    }
    for i = 1, ITER do
      waits = {}
      local res = guarded(r.pick(ops))
      assert(res[1], "SDK call raised: " .. tostring(res[2]) .. " (iteration " .. i .. ")")
      local v, err = res[2], res[3]
      if v == nil then
        assert_error(err, "(decoder, iteration " .. i .. ")")
        if err.retry_after ~= nil then
          assert(type(err.retry_after) == "number" and err.retry_after >= 0, "bad retry_after")
        end
      else
        assert(type(v) == "table", "result is a " .. type(v))
      end
      for _, w in ipairs(waits) do
        assert(type(w) == "number" and w >= 0 and w <= retry.MAX_RETRY_AFTER, "unbounded wait " .. tostring(w))
      end
    end
    assert.is_true(calls >= ITER)
  end)

  it("pure parsers: headers.new, parse_retry_after, parse_timestamp, json.decode", function()
    local r = new_rng(SEED + 2)
    for i = 1, ITER do
      local list = {}
      for _ = 1, r.int(0, 5) do list[#list + 1] = { r.chance(0.9) and junk(r, 12) or r.int(1, 3), random_value(r) } end
      local src = r.chance(0.9) and header_table(r, list) or random_value(r)
      local res = guarded(headers.new, src)
      assert(res[1], "headers.new raised: " .. tostring(res[2]) .. " (iteration " .. i .. ")")
      local h = res[2]
      for k, v in pairs(h) do
        assert(type(k) == "string" and k == k:lower() and type(v) == "string")
        assert(type(headers.all(h, k)) == "table")
      end

      local s = junk(r, 40)
      res = guarded(retry.parse_retry_after, r.chance(0.9) and s or random_value(r), 1767225600)
      assert(res[1], "parse_retry_after raised on " .. string.format("%q", s))
      assert(res[2] == nil or (type(res[2]) == "number" and res[2] >= 0 and res[2] == res[2]))

      res = guarded(webhook.parse_timestamp, s)
      assert(res[1], "parse_timestamp raised on " .. string.format("%q", s))
      assert(res[2] == nil or type(res[2]) == "number")

      local text = r.chance(0.5) and junk(r, 120) or (json.encode(random_value(r)) or "") .. junk(r, 2)
      res = guarded(json.decode, text, r.chance(0.5))
      assert(res[1], "json.decode raised on " .. string.format("%q", text))
      assert(res[3] == nil or type(res[3]) == "string")
    end
  end)
end)
