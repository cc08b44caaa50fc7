-- ugen.errors: the error shape and the mapping of both documented body formats.
local errors = require "ugen.errors"
local ugen = require "ugen"

local function nested(code, message, details)
  local json = require "ugen.json"
  return json.encode({ error = { code = code, message = message, details = details } })
end

describe("ugen.errors.from_response", function()
  local cases = {
    { 400, "validation", false }, { 401, "auth", false }, { 402, "insufficient_credits", false },
    { 403, "auth", false }, { 404, "not_found", false }, { 409, "conflict", false },
    { 408, "api", true }, { 429, "rate_limit", true }, { 500, "api", true }, { 501, "api", false },
    { 502, "api", true }, { 503, "api", true }, { 504, "api", true }, { 418, "api", false },
  }
  for _, c in ipairs(cases) do
    it(("maps HTTP %d with the nested error body to kind %s"):format(c[1], c[2]), function()
      local e = errors.from_response(c[1], nested("SOME_CODE", "went wrong", { a = 1 }), "req-1")
      assert.equal(c[2], e.kind)
      assert.equal(c[1], e.status)
      assert.equal("SOME_CODE", e.code)
      assert.equal("went wrong", e.message)
      assert.same({ a = 1 }, e.details)
      assert.equal("req-1", e.request_id)
      assert.equal(c[3], e.retryable)
      assert.is_true(errors.is(e))
      assert.is_true(errors.is(e, c[2]))
      assert.is_true(ugen.is_error(e, c[2]))
    end)
  end

  it("maps the documented 402 INSUFFICIENT_CREDITS body", function()
    local e = errors.from_response(402, '{ "error": { "code": "INSUFFICIENT_CREDITS",'
      .. ' "message": "Not enough credits for this job", "details": { "required": 140, "available": 35 } } }')
    assert.equal("insufficient_credits", e.kind)
    assert.equal("INSUFFICIENT_CREDITS", e.code)
    assert.equal(140, e.details.required)
    assert.equal(35, e.details.available)
    assert.equal("ugen: insufficient_credits error (HTTP 402) INSUFFICIENT_CREDITS: Not enough credits for this job"
      .. " (credits required 140, available 35)", tostring(e))
  end)

  it("maps the documented 422 detail list to kind validation with fields", function()
    local body = '{ "detail": [ { "type": "missing", "loc": ["body", "segment_count"],'
      .. ' "msg": "Field required", "input": { "product_name": "Mug" } } ] }'
    local e = errors.from_response(422, body)
    assert.equal("validation", e.kind)
    assert.equal(422, e.status)
    assert.equal(1, #e.fields)
    assert.equal("missing", e.fields[1].type)
    assert.same({ "body", "segment_count" }, e.fields[1].loc)
    assert.equal("Mug", e.fields[1].input.product_name)
    assert.is_false(e.retryable)
    assert.matches("segment_count: Field required", tostring(e))
  end)

  it("accepts a detail list on a 400 and a nested error on a 400", function()
    local e = errors.from_response(400, '{"detail":[{"type":"value_error","loc":["body","file"],"msg":"empty"}]}')
    assert.equal("validation", e.kind); assert.equal(1, #e.fields)
    e = errors.from_response(400, nested("BAD_FILE", "empty file"))
    assert.equal("validation", e.kind); assert.equal("BAD_FILE", e.code); assert.same({}, e.fields)
  end)

  it("understands FastAPI's {detail = string} and a bare message", function()
    assert.equal("Not Found", errors.from_response(405, '{"detail":"Not Found"}').message)
    assert.equal("nope", errors.from_response(403, '{"message":"nope"}').message)
  end)

  it("reads retry hints from error.details.retry_after (left for the pipeline)", function()
    local e = errors.from_response(429, nested("RATE_LIMITED", "slow down", { retry_after = 7 }))
    assert.equal("rate_limit", e.kind)
    assert.equal(7, e.details.retry_after)
  end)

  it("keeps the status' kind for an empty error body", function()
    local e = errors.from_response(404, "")
    assert.equal("not_found", e.kind)
    assert.equal("HTTP 404 Not Found", e.message)
    e = errors.from_response(401, nil)
    assert.equal("auth", e.kind)
  end)

  it("makes a non-JSON body on a 4xx a decode error with the status kept", function()
    for _, body in ipairs({ "<html>oops</html>", '{"error": {"code": "X", "mess' }) do
      local e = errors.from_response(404, body)
      assert.equal("decode", e.kind)
      assert.equal(404, e.status)
      assert.is_false(e.retryable)
    end
  end)

  it("keeps a gateway's HTML 502/503/504 as kind api, retryable, status kept", function()
    for _, st in ipairs({ 502, 503, 504 }) do
      local e = errors.from_response(st, "<html><body>Bad Gateway</body></html>")
      assert.equal("api", e.kind)
      assert.equal(st, e.status)
      assert.is_true(e.retryable)
      assert.matches("not JSON", e.message)
    end
    local e = errors.from_response(429, "slow down")
    assert.equal("rate_limit", e.kind); assert.is_true(e.retryable)
  end)
end)

describe("ugen.errors.from_transport", function()
  it("keeps network/timeout/tls kinds; tls is not retryable", function()
    local e = errors.from_transport({ kind = "timeout", message = "Timeout was reached", curl_code = 28, sent = true })
    assert.equal("timeout", e.kind); assert.equal("CURLE_28", e.code); assert.is_true(e.retryable)
    assert.is_nil(e.status)
    e = errors.from_transport({ kind = "tls", message = "SSL certificate problem", curl_code = 60 })
    assert.equal("tls", e.kind); assert.is_false(e.retryable)
    e = errors.from_transport({ kind = "weird", message = "x" })
    assert.equal("network", e.kind)
    e = errors.from_transport("connection refused")
    assert.equal("network", e.kind); assert.equal("connection refused", e.message)
  end)
end)

describe("ugen.errors helpers", function()
  it("tostring is one line with kind, status, code, message, retry_after and request id", function()
    local e = errors.new{ kind = "rate_limit", status = 429, code = "LIMIT", message = "too many",
                          retry_after = 2, request_id = "abc" }
    local s = tostring(e)
    assert.equal("ugen: rate_limit error (HTTP 429) LIMIT: too many (retry after 2s) (request abc)", s)
    assert.is_nil(s:find("\n"))
    assert.is_false(errors.new{ kind = "api" }.retryable)
  end)

  it("is() rejects other values", function()
    assert.is_false(errors.is(nil)); assert.is_false(errors.is({ kind = "api" }))
    assert.is_false(errors.is("x", "api"))
  end)

  it("lists every kind of DESIGN.md plus job_failed", function()
    for _, k in ipairs({ "api", "validation", "rate_limit", "insufficient_credits", "auth", "not_found",
                         "conflict", "network", "timeout", "tls", "decode", "signature", "job_failed",
                         "cancelled", "io", "budget" }) do
      assert.is_true(errors.is_kind(k), k)
    end
  end)

  it("redacts secrets from every string of the error, nested included", function()
    local secret = "ugen_sk_live_0123456789abcdef"
    local e = errors.new{ kind = "api", message = "bad key " .. secret,
      details = { echo = { secret, "x" .. secret .. "y" } },
      fields = { { loc = { "body", "webhook_secret" }, msg = "bad", input = { webhook_secret = secret } } } }
    errors.redact(e, { secret, "short" })
    assert.equal("bad key <redacted>", e.message)
    assert.equal("<redacted>", e.details.echo[1])
    assert.equal("x<redacted>y", e.details.echo[2])
    assert.equal("<redacted>", e.fields[1].input.webhook_secret)
    assert.is_nil(tostring(e):find(secret, 1, true))
  end)
end)

describe("ugen.errors.from_transport (decode, explicit retryable)", function()
  it("keeps kind decode (too large) and an explicit retryable = false", function()
    local e = errors.from_transport({ kind = "decode", code = "TOO_LARGE", message = "big", retryable = false })
    assert.equal("decode", e.kind); assert.equal("TOO_LARGE", e.code); assert.is_false(e.retryable)
    e = errors.from_transport({ kind = "network", message = "x", retryable = false })
    assert.is_false(e.retryable)
  end)
end)

-- Issue 16 item 7: tostring says what the CLI says; a wrong base path is not a missing job.
describe("ugen.errors tostring facts", function()
  it("names the job (id, status, stage) of a job_failed error", function()
    local e = errors.new{ kind = "job_failed", code = "JOB_FAILED", message = "generation crashed",
      job = { job_id = "j-1", status = "failed", current_stage = "generating_video" } }
    assert.equal("ugen: job_failed error JOB_FAILED: generation crashed"
      .. " (job j-1, status failed, stage generating_video)", tostring(e))
  end)

  it("shows the credits required and available of a 402, whatever their number subtype", function()
    local e = errors.new{ kind = "insufficient_credits", status = 402, code = "INSUFFICIENT_CREDITS",
      message = "Not enough credits", details = { required = 140.0, available = 35 } }
    assert.equal("ugen: insufficient_credits error (HTTP 402) INSUFFICIENT_CREDITS: Not enough credits"
      .. " (credits required 140, available 35)", tostring(e))
    e.details = { required = 140 }
    assert.matches("(credits required 140, available ?)", tostring(e), 1, true)
  end)

  it("shows the attempts of a network/timeout error, and of any error sent more than once", function()
    local e = errors.from_transport({ kind = "network", message = "Couldn't connect to server", curl_code = 7 })
    e.attempts = 3
    assert.equal("ugen: network error CURLE_7: Couldn't connect to server (after 3 attempts)", tostring(e))
    e.attempts = 1
    assert.equal("ugen: network error CURLE_7: Couldn't connect to server (after 1 attempt)", tostring(e))
    local h = errors.from_response(404, '{"error":{"code":"JOB_NOT_FOUND","message":"Job not found"}}')
    h.attempts = 1
    assert.equal("ugen: not_found error (HTTP 404) JOB_NOT_FOUND: Job not found", tostring(h))
    h = errors.from_response(503, '{"error":{"code":"UNAVAILABLE","message":"down"}}', "r-9")
    h.attempts = 3
    assert.equal("ugen: api error (HTTP 503) UNAVAILABLE: down (after 3 attempts) (request r-9)", tostring(h))
  end)

  it("keeps the line one line and secret-free with the new facts", function()
    local secret = "ugen_sk_live_0123456789abcdef"
    local owner = {}
    errors.add_secrets(owner, secret)
    local e = errors.new{ kind = "job_failed", message = "x",
      job = { job_id = "a\nb\27[31m", status = "failed", current_stage = "s-" .. secret } }
    local s = tostring(e)
    assert.is_nil(s:find("\n")); assert.is_nil(s:find("\27", 1, true))
    assert.truthy(s:find("(job a\\nb\\x1b[31m, status failed, stage s-<redacted>)", 1, true), s)
    assert.is_nil(s:find(secret, 1, true))
    assert.is_table(owner)   -- (held until here: its secrets are registered while it lives)
  end)
end)

describe("ugen.errors.from_response: a wrong base path", function()
  it("a 404 with the server's no-route body is kind api, ROUTE_NOT_FOUND, pointing at base_url", function()
    for _, body in ipairs({
      '{"error":{"code":"NOT_FOUND","message":"No route for GET /api/v2/jobs/abc"}}',  -- the sandbox
      '{"detail":"Not Found"}',                                                          -- FastAPI
    }) do
      local e = errors.from_response(404, body, "r-1")
      assert.equal("api", e.kind, body)
      assert.equal("ROUTE_NOT_FOUND", e.code)
      assert.equal(404, e.status)
      assert.is_false(e.retryable)
      assert.matches("base_url", e.message)
      assert.matches("no such endpoint", tostring(e))
    end
    local e = errors.from_response(404, '{"error":{"code":"NOT_FOUND","message":"No route for GET /x"}}')
    assert.matches("^No route for GET /x %(", e.message)
  end)

  it("an unknown id keeps kind not_found and does not mention base_url", function()
    local e = errors.from_response(404, '{"error":{"code":"JOB_NOT_FOUND","message":"Job not found"}}')
    assert.equal("not_found", e.kind); assert.equal("JOB_NOT_FOUND", e.code)
    assert.is_nil(tostring(e):find("base_url", 1, true))
    e = errors.from_response(404, "")
    assert.equal("not_found", e.kind)
  end)
end)

describe("ugen.errors kind io", function()
  it("from_transport keeps kind io, never retryable, its own code before the curl code", function()
    local e = errors.from_transport({ kind = "io", code = "IO_ERROR", curl_code = 23, retryable = true,
      message = "cannot open output file: /x/y.part: No such file or directory" })
    assert.equal("io", e.kind); assert.is_false(e.retryable)
    assert.equal("IO_ERROR", e.code); assert.equal(23, e.curl_code)
    assert.equal("ugen: io error IO_ERROR: cannot open output file: /x/y.part: No such file or directory",
      tostring(e))
  end)
end)
