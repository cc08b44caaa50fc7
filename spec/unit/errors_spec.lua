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
    assert.equal("ugen: insufficient_credits error (HTTP 402) INSUFFICIENT_CREDITS: Not enough credits for this job",
      tostring(e))
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
    assert.equal("Not Found", errors.from_response(404, '{"detail":"Not Found"}').message)
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
                         "conflict", "network", "timeout", "tls", "decode", "signature", "job_failed" }) do
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
