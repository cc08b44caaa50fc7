-- Issue 4, structural: every entry of lua/ugen/endpoints.lua has an SDK
-- method that sends exactly that method + path with each parameter where the
-- table says (path, query, JSON body, multipart form); uploads are checked
-- before anything is sent; ugen.media's sniffing is the sandbox's; and the
-- download logic (resume, restart, verification, progress, failures) with
-- user-function transports. (The sandbox side of the coverage:
-- spec/integration/endpoints_spec.lua.)
local ugen = require "ugen"
local endpoints = require "ugen.endpoints"
local media = require "ugen.media"
local json = require "ugen.json"
local samples = require "support.media_samples"

local unpack = table.unpack or unpack

local BASE = "http://api.test.invalid/api/v1"
local KEY = "ugen_sk_test_ABCDEFGHIJKLMNOP"

local function client(fn, extra)
  local o = { api_key = KEY, base_url = BASE, transport = fn, rng = function() return 0 end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return ugen.new(o)
end

local function tmpfile(data)
  local name = os.tmpname()
  if data then
    local f = assert(io.open(name, "wb")); f:write(data); f:close()
  end
  return name
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a"); f:close()
  return s
end

-- The documented endpoints (UGEN-API.md section 10 / endpoints.json): the table
-- has exactly these, no invented ones.
local DOCUMENTED = {
  "POST /jobs", "GET /jobs", "GET /jobs/{job_id}",
  "GET /credits/balance", "GET /credits/transactions", "POST /credits/estimate",
  "GET /models", "GET /models/{model_id}", "POST /models/{model_id}/try",
  "PUT /tenants/me/webhook", "GET /tenants/me/webhook", "DELETE /tenants/me/webhook",
  "GET /tenants/me", "POST /tenants/me/avatar", "POST /tenants/me/brand-kit/logo",
  "POST /uploads/product-image",
  "GET /music/catalog", "GET /music/custom", "POST /music/custom", "DELETE /music/custom/{music_id}",
  "GET /templates", "POST /templates",
}

-- A valid sample value for a parameter spec.
local function sample_value(p, ep)
  if p.type == "file" then
    for _, f in ipairs(samples.FORMATS) do
      if p.formats[f] then return { data = samples[f], filename = "sample." .. f }, f end
    end
    error("no sample format for " .. ep.resource .. "." .. ep.name)
  end
  if p.enum then return p.enum[1] end
  if p.type == "string" then return "v-" .. p.name end
  if p.type == "integer" then return p.min or 1 end
  if p.type == "number" then return p.max or p.min or 1 end
  if p.type == "boolean" then return true end
  if p.type == "object" then return { k = "v" } end
  if p.type == "array" then return { "a", "b" } end
  error("no sample for type " .. tostring(p.type))
end

local function parse_query(url)
  local q = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    q[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return q
end

describe("the endpoint table", function()
  it("holds exactly the 22 documented endpoints", function()
    local have = {}
    for _, ep in ipairs(endpoints.list) do have[#have + 1] = ep.method .. " " .. ep.path end
    table.sort(have)
    local want = {}
    for i, s in ipairs(DOCUMENTED) do want[i] = s end
    table.sort(want)
    assert.same(want, have)
  end)

  it("gives every endpoint a unique resource.name and valid parameter specs", function()
    local seen = {}
    for _, ep in ipairs(endpoints.list) do
      local key = ep.resource .. "." .. ep.name
      assert.is_nil(seen[key], key)
      seen[key] = true
      local np = 0
      for name in ep.path:gmatch("{([%w_]+)}") do
        np = np + 1
        assert.equal(name, ep.path_params[np], key)
        assert.equal("path", ep.by_param[name]["in"], key)
      end
      assert.equal(np, #ep.path_params, key)
      for _, p in ipairs(ep.params) do
        assert.truthy(({ path = 1, query = 1, body = 1, form = 1 })[p["in"]], key .. " " .. p.name)
        if p["in"] == "body" then assert.equal("json", ep.body, key) end
        if p["in"] == "form" then assert.equal("multipart", ep.body, key) end
        if p.type == "file" then
          assert.is_number(p.max_bytes, key)
          for f, mime in pairs(p.formats) do
            assert.equal(mime, media.mime[f], key .. " " .. f)
            assert.is_string(samples[f], "a spec sample for format " .. f)
          end
        end
      end
    end
  end)
end)

describe("every endpoint through its SDK method", function()
  for _, ep in ipairs(endpoints.list) do
    local key = ep.resource .. ":" .. ep.name
    it(key .. " sends " .. ep.method .. " " .. ep.path .. " with every parameter in its place", function()
      local calls = {}
      local c = client(function(req)
        calls[#calls + 1] = req
        return { status = ep.success or 200, headers = {},
                 body = ep.paging == "array" and "[]" or '{"items":[],"total":0,"page":1,"page_size":20}' }
      end)
      local resource = c[ep.resource]
      assert.is_table(resource, "client." .. ep.resource)
      assert.is_function(resource[ep.name], key)
      local args, expected_path = {}, ep.path
      for i, name in ipairs(ep.path_params) do
        args[i] = "id " .. i .. "/" .. name      -- needs URL-encoding
        local enc = args[i]:gsub(" ", "%%20"):gsub("/", "%%2F")
        expected_path = expected_path:gsub("{" .. name .. "}", function() return enc end)
      end
      local params, has = {}, false
      for _, p in ipairs(ep.params) do
        if p["in"] ~= "path" then params[p.name] = sample_value(p, ep); has = true end
      end
      if ep.open_body then params.prompt = "free-form"; has = true end
      if has then args[#args + 1] = params end
      local res, err = resource[ep.name](resource, unpack(args, 1, #ep.path_params + (has and 1 or 0)))
      assert.is_table(res, tostring(err))
      assert.equal(1, #calls)
      local req = calls[1]
      assert.equal(ep.method, req.method)
      assert.equal(BASE .. expected_path, req.url:match("^[^?]*"))
      local query, body = parse_query(req.url), req.body and json.decode(req.body)
      local form = {}
      for _, part in ipairs(req.mime or {}) do form[part.name] = part end
      for _, p in ipairs(ep.params) do
        local v = params[p.name]
        if p["in"] == "query" then
          assert.equal(tostring(v), query[p.name], key .. " query " .. p.name)
        elseif p["in"] == "body" then
          assert.same(v, body[p.name], key .. " body " .. p.name)
        elseif p["in"] == "form" and p.type == "file" then
          assert.equal(v.data, form[p.name].data, key .. " file")
          assert.equal(v.filename, form[p.name].filename)
        elseif p["in"] == "form" then
          assert.equal(v, form[p.name].data, key .. " form " .. p.name)
        end
      end
      if ep.open_body then assert.equal("free-form", body.prompt) end
      if ep.body == "multipart" then assert.is_nil(req.body) else assert.is_nil(req.mime) end
      if ep.paging == "envelope" then
        local each = resource[ep.name == "list" and "each" or "each_" .. ep.name:gsub("s$", "")]
        assert.is_function(each, key .. " iterator")
      end
    end)
  end

  it("path parameters are checked at the call site", function()
    local c = client(function() error("must not be called") end)
    for _, ep in ipairs(endpoints.list) do
      if #ep.path_params > 0 then
        local r = c[ep.resource]
        assert.has_error(function() r[ep.name](r) end,
          "bad argument #1 to '" .. ep.name .. "' (string expected, got nil)")
      end
    end
  end)
end)

describe("ugen.media", function()
  it("recognises every sample by its bytes, whatever the name", function()
    for _, f in ipairs(samples.FORMATS) do assert.equal(f, media.sniff(samples[f]), f) end
  end)

  it("tells MP3 from AAC behind an ID3 tag, and rejects look-alikes", function()
    assert.equal("aac", media.sniff("ID3\4\0\0\0\0\0\0" .. samples.aac))
    assert.equal("mp3", media.sniff("ID3\4\0\0\0\0\0\0" .. "\255\251\144\0"))
    assert.equal("mp3", media.sniff("ID3\4\0\0\0\0\127\127"))          -- tag beyond the head
    assert.is_nil(media.sniff("RIFF\0\0\0\0AVI LIST"))
    assert.is_nil(media.sniff("\255\225"))                               -- reserved version
    assert.is_nil(media.sniff("hello world"))
    assert.is_nil(media.sniff(""))
    assert.is_nil(media.sniff("<html><body><svg></svg></body></html>"))
    assert.equal("svg", media.sniff("\239\187\191  <svg xmlns='http://www.w3.org/2000/svg'/>"))
    assert.equal("svg", media.sniff("<!DOCTYPE svg PUBLIC '-//W3C//DTD SVG 1.1//EN' 'x'>\n<svg/>"))
    assert.equal("svg", media.sniff("<!-- logo -->\n<svg/>"))
  end)

  it("maps Content-Types and their aliases to formats", function()
    assert.equal("jpeg", media.format_of_type("image/jpg"))
    assert.equal("wav", media.format_of_type(" Audio/X-WAV ; charset=x"))
    assert.is_nil(media.format_of_type("application/octet-stream"))
    for f, mime in pairs(media.mime) do assert.equal(f, media.format_of_type(mime)) end
  end)

  it("is what the sandbox sniffs with (one implementation)", function()
    local saved = package.path
    package.path = "./sandbox/lib/?.lua;" .. package.path
    local ok, multipart = pcall(require, "ugen_sandbox_server.multipart")
    package.path = saved
    assert(ok, multipart)
    assert.equal(media.sniff, multipart.sniff)
    assert.equal(media.alias, multipart.mime_alias)
  end)
end)

describe("uploads are checked before sending", function()
  -- each upload endpoint, a format it refuses, and how to fill its other fields
  local UPLOADS = {
    { "uploads", "product_image", refused = "svg" },
    { "tenant", "upload_avatar", refused = "gif" },
    { "brand_kit", "upload_logo", refused = "jpeg" },
    { "music", "upload", refused = "png", extra = { title = "T" } },
  }

  local function call(c, u, file)
    local params = { file = file }
    for k, v in pairs(u.extra or {}) do params[k] = v end
    local r = c[u[1]]
    return r[u[2]](r, params)
  end

  for _, u in ipairs(UPLOADS) do
    local ep = endpoints.by_resource[u[1]][u[2]]
    local spec = ep.by_param.file
    it(u[1] .. ":" .. u[2] .. " accepts each documented format and refuses everything else, sending nothing", function()
      local calls = {}
      local c = client(function(req) calls[#calls + 1] = req; return { status = 201, headers = {}, body = "{}" } end)
      -- accepted: from a string and from a path, named anything
      for f in pairs(spec.formats) do
        local n = #calls
        assert.truthy(call(c, u, { data = samples[f], filename = "upload.bin" }))
        local part = calls[n + 1].mime[1]
        assert.equal(spec.formats[f], part.type)
        local path = tmpfile(samples[f])
        assert.truthy(call(c, u, path))
        assert.equal(spec.formats[f], calls[n + 2].mime[1].type)
        assert.equal(path, calls[n + 2].mime[1].path)
        os.remove(path)
        -- without a filename: a default named after the format
        assert.truthy(call(c, u, { data = samples[f] }))
        assert.matches("^file%.%w+$", calls[n + 3].mime[1].filename)
      end
      local sent = #calls
      local function refused(file, code, pattern)
        local r, err = call(c, u, file)
        assert.is_nil(r)
        assert.equal("validation", err.kind)
        assert.equal(code, err.code)
        assert.same({ "body", "file" }, err.fields[1].loc)
        if pattern then assert.matches(pattern, tostring(err)) end
        assert.equal(sent, #calls)                                   -- nothing sent
      end
      refused({ data = "", filename = "x.png" }, "EMPTY_FILE", "empty")
      refused({ data = samples.of(next(spec.formats), spec.max_bytes + 1) }, "FILE_TOO_LARGE",
              "limit is " .. spec.max_bytes)
      local big = tmpfile()
      local f = assert(io.open(big, "wb")); f:seek("set", spec.max_bytes); f:write("x"); f:close()
      refused(big, "FILE_TOO_LARGE")
      os.remove(big)
      refused({ data = samples[u.refused], filename = "looks-ok." .. next(spec.formats) }, "UNSUPPORTED_FILE_TYPE",
              media.name[u.refused])
      refused({ data = "just some text", filename = "x." .. next(spec.formats) }, "UNSUPPORTED_FILE_TYPE")
      local fmt = next(spec.formats)
      refused({ data = samples[fmt], content_type = fmt == "png" and "image/webp" or "image/png" },
              "UNSUPPORTED_FILE_TYPE", "does not match")
      refused("/nonexistent/dir/file.png", "FILE_UNREADABLE")
      refused({ path = "x", data = "y" }, "INVALID_FILE")
      refused({ data = samples[fmt], colour = "red" }, "INVALID_FILE")
      -- a declared type naming the same format is kept; octet-stream defers to the content
      assert.truthy(call(c, u, { data = samples[fmt], content_type = media.mime[fmt] .. "; x=1" }))
      assert.equal(media.mime[fmt] .. "; x=1", calls[#calls].mime[1].type)
      assert.truthy(call(c, u, { data = samples[fmt], content_type = "application/octet-stream" }))
      assert.equal(media.mime[fmt], calls[#calls].mime[1].type)
    end)
  end

  it("reports a bad file together with the other fields' problems", function()
    local calls = 0
    local c = client(function() calls = calls + 1; return { status = 201, headers = {}, body = "{}" } end)
    local _, err = c.music:upload{ file = { data = "" } }
    assert.equal("validation", err.kind)
    assert.equal(2, #err.fields)
    assert.equal("missing", err.fields[1].type); assert.same({ "body", "title" }, err.fields[1].loc)
    assert.equal("EMPTY_FILE", err.code)
    assert.equal(0, calls)
    assert.has_error(function() c.music:upload("x") end, "bad argument #1 to 'upload' (table expected, got string)")
  end)
end)

describe("jobs:download (user-function transports)", function()
  local VIDEO = ("0123456789abcdef"):rep(64)          -- 1024 bytes
  local JOB = { job_id = "j", status = "completed", final_video_url = "https://cdn.example/v.mp4" }

  -- A transport that serves VIDEO honouring req.output/req.resume_from the way the
  -- contract says; plan[i] shapes attempt i: "cut" (stop after `cut` bytes, network
  -- error), "416", "ignore_range" (200 + whole body), "bad_range", "short", "500", "404".
  local function server(plan, cut)
    local calls = {}
    local fn = function(req)
      local i = #calls + 1
      calls[i] = req
      local how = plan[i]
      local from = req.resume_from or 0
      if how == "404" or how == "500" then
        return { status = tonumber(how), headers = {}, body = '{"error":{"code":"X","message":"no"}}' }
      end
      if how == "416" then
        return { status = 416, headers = { "content-range", "bytes */" .. #VIDEO }, body = "" }
      end
      local status, body = 206, VIDEO:sub(from + 1)
      if how == "ignore_range" or from == 0 then status, body = 200, VIDEO end
      if how == "bad_range" then from = from + 1; body = VIDEO:sub(from + 1) end
      local headers = { "content-length", tostring(#body) }
      if status == 206 then
        headers[3], headers[4] = "content-range", ("bytes %d-%d/%d"):format(from, #VIDEO - 1, #VIDEO)
      end
      local keep = status == 206 and (req.resume_from or 0) or 0
      local old = keep > 0 and read(req.output):sub(1, keep) or ""
      local f = assert(io.open(req.output, "wb"))
      if how == "cut" then
        f:write(old .. body:sub(1, cut)); f:close()
        return nil, { kind = "network", message = "connection reset", sent = true }
      end
      if req.on_progress and req.on_progress(#body, 0, 0, 0) == false then   -- abort, as the core does
        f:write(old); f:close()
        return nil, { kind = "network", message = "aborted by on_progress", sent = true }
      end
      if how == "short" then body = body:sub(1, #body - 10) end
      f:write(old .. body); f:close()
      if req.on_progress then req.on_progress(#body, #body, 0, 0) end
      return { status = status, headers = headers, size = #body }
    end
    return fn, calls
  end

  local function target()
    local p = os.tmpname()
    os.remove(p)
    return p
  end

  it("resumes after a broken transfer within one call (retry) and across calls", function()
    local fn, calls = server({ "cut", "cut", "ok" }, 100)
    local c = client(fn, { max_retries = 1 })
    local path = target()
    local r, err = c.jobs:download(JOB, path)
    assert.is_nil(r)
    assert.equal("network", err.kind)
    assert.equal(path .. ".part", err.part); assert.equal(200, err.part_bytes)
    assert.is_nil(read(path))
    assert.is_nil(calls[1].resume_from); assert.equal(100, calls[2].resume_from)
    local seen = {}
    r = assert(c.jobs:download(JOB, path, { on_progress = function(d, t) seen[#seen + 1] = { d, t } end }))
    assert.equal(200, calls[3].resume_from)
    assert.equal(VIDEO, read(path)); assert.is_nil(read(path .. ".part"))
    assert.same({ path = path, size = #VIDEO, status = 206, resumed_from = 200 }, r)
    assert.same({ #VIDEO, #VIDEO }, seen[#seen])
    assert.same({ 200, #VIDEO }, seen[1])                            -- done counts the kept bytes
    os.remove(path)
  end)

  it("starts over once when the server cannot resume (416, a wrong range)", function()
    for _, plan in ipairs({ { "cut", "416", "ok" }, { "cut", "bad_range", "ok" } }) do
      local fn, calls = server(plan, 100)
      local c = client(fn, { max_retries = 1 })
      local path = target()
      local r, err = c.jobs:download(JOB, path)
      assert.is_table(r, table.concat(plan, ",") .. ": " .. tostring(err))
      assert.equal(VIDEO, read(path))
      assert.is_nil(calls[#calls].resume_from)                       -- the last attempt from byte 0
      os.remove(path)
    end
  end)

  it("a short file (fewer bytes than announced) is a broken transfer: resumed", function()
    local fn, calls = server({ "short", "ok" }, 100)
    local path = target()
    assert.truthy(client(fn, { max_retries = 1 }).jobs:download(JOB, path))
    assert.equal(#VIDEO - 10, calls[2].resume_from)
    assert.equal(VIDEO, read(path))
    os.remove(path)
  end)

  it("a transport that ignores resume_from still ends with the right file", function()
    local fn, calls = server({ "cut", "ignore_range" }, 100)
    local path = target()
    assert.truthy(client(fn, { max_retries = 1 }).jobs:download(JOB, path))
    assert.equal(100, calls[2].resume_from)
    assert.equal(VIDEO, read(path))
    os.remove(path)
  end)

  it("a non-retryable failure removes the .part and leaves path alone", function()
    local fn = server({ "cut", "404" }, 100)
    local c = client(fn, { max_retries = 0 })
    local path = target()
    local f = assert(io.open(path, "wb")); f:write("OLD"); f:close()
    local _, err = c.jobs:download(JOB, path)
    assert.equal(100, err.part_bytes)
    _, err = c.jobs:download(JOB, path)
    assert.equal("not_found", err.kind)
    assert.is_nil(err.part)
    assert.is_nil(read(path .. ".part"))
    assert.equal("OLD", read(path))                                 -- untouched
    os.remove(path)
  end)

  it("retries 5xx and keeps the bytes; gives up after max_retries", function()
    local fn, calls = server({ "cut", "500", "500" }, 300)
    local path = target()
    local _, err = client(fn, { max_retries = 2 }).jobs:download(JOB, path)
    assert.equal(3, #calls)
    assert.equal(500, err.status); assert.equal(3, err.attempts)
    assert.equal(300, err.part_bytes)
    os.remove(path .. ".part")
  end)

  it("an error raised by on_progress propagates; the .part stays for a later resume", function()
    local fn = server({ "cut", "ok" }, 100)
    local c = client(fn, { max_retries = 0 })
    local path = target()
    c.jobs:download(JOB, path)
    assert.has_error(function()
      c.jobs:download(JOB, path, { on_progress = function() error("stop here", 0) end })
    end, "stop here")
    assert.is_nil(read(path))
    assert.equal(100, #read(path .. ".part"))
    os.remove(path .. ".part")
  end)

  it("checks its arguments", function()
    local c = client(function() error("not reached") end)
    assert.has_error(function() c.jobs:download(1, "p") end,
      "bad argument #1 to 'download' (job table or job id string expected, got number)")
    assert.has_error(function() c.jobs:download(JOB, nil) end,
      "bad argument #2 to 'download' (file path string expected, got nil)")
    assert.has_error(function() c.jobs:download(JOB, "p", { on_progress = 1 }) end,
      "bad argument #3 to 'download' (opts.on_progress must be a function)")
    assert.has_error(function() c.jobs:download(JOB, "p", { resume = false }) end,
      "bad argument #3 to 'download' (unknown option 'resume')")
    assert.has_error(function() c.jobs:download(JOB, "p", { timeout = -1 }) end,
      "bad argument #3 to 'download' (opts.timeout must be a positive number)")
  end)
end)
