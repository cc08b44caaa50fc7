-- ugen.webhook: receiver-side verification and signing.
local webhook = require("ugen").webhook
local crypto = require "ugen.crypto"

local SECRET = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
local BODY = '{"event":"job.completed","job_id":"7c2e51b0-4a9d-4f3e-8b61-0d93a7c4e215","status":"completed",'
  .. '"final_video_url":"https://cdn.example/v.mp4","thumbnail_url":null,"credits_consumed":140,'
  .. '"error_message":null,"timestamp":"2026-05-02T09:12:44Z"}'
local TS = 1777713164 -- 2026-05-02T09:12:44Z

local function signed(ts, body)
  ts = ts or TS
  return { ["X-UGen-Timestamp"] = tostring(ts), ["X-UGen-Signature"] = webhook.sign(SECRET, ts, body or BODY) }
end

local function fails(code, ...)
  local ev, err = webhook.verify(...)
  assert.is_nil(ev)
  assert.equal("signature", err.kind)
  assert.equal(code, err.code)
  assert.is_false(err.retryable)
  assert.is_nil(tostring(err):find(SECRET, 1, true))
  return err
end

describe("ugen.webhook.sign", function()
  it("is hex HMAC-SHA256 of timestamp .. '.' .. body with the secret string as key", function()
    local sig = webhook.sign(SECRET, TS, BODY)
    assert.equal(crypto.hmac_sha256(SECRET, tostring(TS) .. "." .. BODY), sig)
    assert.matches("^" .. ("%x"):rep(64) .. "$", sig)
    assert.equal(sig, webhook.sign(SECRET, tostring(TS), BODY))
  end)

  it("builds the two headers", function()
    local h = webhook.headers(SECRET, BODY, TS)
    assert.equal(tostring(TS), h["X-UGen-Timestamp"])
    assert.equal(webhook.sign(SECRET, TS, BODY), h["X-UGen-Signature"])
    local now = webhook.headers(SECRET, BODY)
    assert.matches("^%d+$", now["X-UGen-Timestamp"])
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() webhook.sign(nil, TS, BODY) end, "bad argument #1 to 'sign' (string expected, got nil)")
    assert.has_error(function() webhook.sign(SECRET, {}, BODY) end,
      "bad argument #2 to 'sign' (string or number expected, got table)")
    assert.has_error(function() webhook.sign(SECRET, TS, 1) end,
      "bad argument #3 to 'sign' (string expected, got number)")
  end)

  it("new_secret gives 64 hex characters", function()
    assert.matches("^" .. ("%x"):rep(64) .. "$", webhook.new_secret())
  end)
end)

describe("ugen.webhook.verify", function()
  it("accepts a good delivery and returns the decoded event", function()
    local ev = assert(webhook.verify(SECRET, signed(), BODY, { now = TS + 10 }))
    assert.equal("job.completed", ev.event)
    assert.equal(140, ev.credits_consumed)
    assert.is_nil(ev.thumbnail_url)
  end)

  it("rejects a tampered body", function()
    fails("SIGNATURE_MISMATCH", SECRET, signed(), BODY:gsub("140", "1"), { now = TS })
  end)

  it("rejects a tampered signature and a wrong secret", function()
    local h = signed()
    local sig = h["X-UGen-Signature"]
    h["X-UGen-Signature"] = (sig:sub(1, 1) == "a" and "b" or "a") .. sig:sub(2)
    fails("SIGNATURE_MISMATCH", SECRET, h, BODY, { now = TS })
    fails("SIGNATURE_MISMATCH", SECRET:upper(), signed(), BODY, { now = TS })
  end)

  it("rejects a tampered timestamp", function()
    local h = signed()
    h["X-UGen-Timestamp"] = tostring(TS + 1)
    fails("SIGNATURE_MISMATCH", SECRET, h, BODY, { now = TS })
  end)

  it("rejects stale and future timestamps outside the tolerance (default 300 s)", function()
    assert.truthy(webhook.verify(SECRET, signed(), BODY, { now = TS + 300 }))
    assert.truthy(webhook.verify(SECRET, signed(), BODY, { now = TS - 300 }))
    local e = fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = TS + 301 })
    assert.matches("before", e.message)
    e = fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = TS - 301 })
    assert.matches("after", e.message)
    fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = TS + 61, tolerance = 60 })
    assert.truthy(webhook.verify(SECRET, signed(), BODY, { now = TS + 10 ^ 6, tolerance = false }))
  end)

  it("uses the wall clock when now is not given", function()
    local ts = os.time()
    assert.truthy(webhook.verify(SECRET, signed(ts), BODY))
    fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(ts - 3600), BODY)
  end)

  it("fails closed on missing headers", function()
    fails("SIGNATURE_MISSING", SECRET, {}, BODY, { now = TS })
    fails("SIGNATURE_MISSING", SECRET, { ["X-UGen-Timestamp"] = tostring(TS) }, BODY, { now = TS })
    fails("TIMESTAMP_MISSING", SECRET, { ["X-UGen-Signature"] = signed()["X-UGen-Signature"] }, BODY, { now = TS })
  end)

  it("fails cleanly on garbled headers", function()
    local h = signed()
    h["X-UGen-Signature"] = "not-hex"
    fails("SIGNATURE_INVALID", SECRET, h, BODY, { now = TS })
    h = signed()
    h["X-UGen-Signature"] = h["X-UGen-Signature"]:sub(1, 63)
    fails("SIGNATURE_INVALID", SECRET, h, BODY, { now = TS })
    h = signed()
    h["X-UGen-Timestamp"] = "yesterday"
    fails("TIMESTAMP_INVALID", SECRET, h, BODY, { now = TS })
    h = signed()
    h["X-UGen-Timestamp"] = { tostring(TS), tostring(TS + 1) }
    fails("TIMESTAMP_INVALID", SECRET, h, BODY, { now = TS })
  end)

  it("rejects non-string bodies cleanly", function()
    fails("BODY_INVALID", SECRET, signed(), nil, { now = TS })
    fails("BODY_INVALID", SECRET, signed(), { event = "job.completed" }, { now = TS })
  end)

  it("looks headers up case-insensitively in every shape", function()
    local h = signed()
    local ts, sig = h["X-UGen-Timestamp"], h["X-UGen-Signature"]
    local shapes = {
      { ["x-ugen-timestamp"] = ts, ["x-ugen-signature"] = sig },                      -- nginx get_headers()
      { ["X-UGEN-TIMESTAMP"] = ts, ["X-Ugen-Signature"] = sig },
      { ["x-ugen-timestamp"] = { ts }, ["x-ugen-signature"] = { sig } },              -- lists of values
      { HTTP_X_UGEN_TIMESTAMP = ts, HTTP_X_UGEN_SIGNATURE = sig },                    -- CGI
      { x_ugen_timestamp = ts, x_ugen_signature = sig },
      { { "X-UGen-Timestamp", ts }, { "X-UGen-Signature", sig } },                    -- list of pairs
      { { name = "x-ugen-timestamp", value = ts }, { name = "x-ugen-signature", value = sig } },
      { "x-ugen-timestamp", ts, "x-ugen-signature", sig },                            -- flat list
      require("ugen.headers").new({ "x-ugen-timestamp", ts, "x-ugen-signature", sig }),
    }
    for i, shape in ipairs(shapes) do
      local ev, err = webhook.verify(SECRET, shape, BODY, { now = TS })
      assert.is_table(ev, "shape " .. i .. ": " .. tostring(err))
    end
  end)

  it("works with an nginx-style headers table (metatable-normalized keys)", function()
    local h = signed()
    local ngx_like = setmetatable({ ["x-ugen-timestamp"] = h["X-UGen-Timestamp"],
                                    ["x-ugen-signature"] = h["X-UGen-Signature"] },
      { __index = function(t, k) return rawget(t, (k:lower():gsub("_", "-"))) end })
    assert.truthy(webhook.verify(SECRET, ngx_like, BODY, { now = TS }))
  end)

  it("accepts uppercase hex, sha256= / v1= prefixes and several signatures", function()
    local h = signed()
    local sig = h["X-UGen-Signature"]
    for _, v in ipairs({ sig:upper(), "sha256=" .. sig, "SHA256=" .. sig:upper(), "v1=" .. sig,
                         ("0"):rep(64) .. ", " .. sig, { ("1"):rep(64), sig } }) do
      h["X-UGen-Signature"] = v
      assert.truthy(webhook.verify(SECRET, h, BODY, { now = TS }), tostring(v))
    end
  end)

  it("accepts ISO-8601 timestamps (Z and offsets) and unix seconds", function()
    for _, ts in ipairs({ "2026-05-02T09:12:44Z", "2026-05-02T11:12:44+02:00", "2026-05-02T09:12:44.250Z",
                          tostring(TS), tostring(TS) .. ".5" }) do
      local h = { ["X-UGen-Timestamp"] = ts, ["X-UGen-Signature"] = webhook.sign(SECRET, ts, BODY) }
      assert.truthy(webhook.verify(SECRET, h, BODY, { now = TS }), ts)
    end
    assert.equal(TS, webhook.parse_timestamp("2026-05-02T09:12:44Z"))
    assert.equal(TS, webhook.parse_timestamp("2026-05-02T04:12:44-05:00"))
    assert.is_nil(webhook.parse_timestamp("2026-13-02T09:12:44Z"))
  end)

  it("a correctly signed ISO-8601 timestamp of a day that does not exist is TIMESTAMP_INVALID", function()
    -- 2026-02-30 would otherwise read as 2026-03-02, and 25:00 offsets as hours of their own
    for _, c in ipairs({ { "2026-02-30T09:12:44Z", 1772442764 }, { "2026-04-31T00:00:00Z", 1777593600 },
                         { "2026-05-02T09:12:44+24:00", TS - 86400 }, { "2026-05-02T09:12:44+05:60", TS - 21600 } }) do
      local ts, would_be = c[1], c[2]
      local h = { ["X-UGen-Timestamp"] = ts, ["X-UGen-Signature"] = webhook.sign(SECRET, ts, BODY) }
      fails("TIMESTAMP_INVALID", SECRET, h, BODY, { now = would_be })
      assert.is_nil(webhook.parse_timestamp(ts), ts)
    end
  end)

  it("with decode = false authenticates only and returns true", function()
    assert.is_true(webhook.verify(SECRET, signed(), BODY, { now = TS, decode = false }))
    local body = "not json, but signed"
    assert.is_true(webhook.verify(SECRET, signed(TS, body), body, { now = TS, decode = false }))
    fails("SIGNATURE_MISMATCH", SECRET, signed(), BODY .. " ", { now = TS, decode = false })
    fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(TS - 301, body), body, { now = TS, decode = false })
    assert.has_error(function() webhook.verify(SECRET, signed(), BODY, { decode = "no" }) end,
      "bad argument #4 to 'verify' (opts.decode must be a boolean, got string)")
  end)

  it("takes a header given under two spellings as two values", function()
    local h = signed()
    local good = h["X-UGen-Signature"]
    -- a bad and a good signature: any match passes, in either key
    local ev = webhook.verify(SECRET, { ["X-UGen-Timestamp"] = h["X-UGen-Timestamp"],
      ["X-UGen-Signature"] = ("0"):rep(64), ["x-ugen-signature"] = good }, BODY, { now = TS })
    assert.is_table(ev)
    fails("SIGNATURE_MISMATCH", SECRET, { ["X-UGen-Timestamp"] = h["X-UGen-Timestamp"],
      ["X-UGen-Signature"] = ("0"):rep(64), ["x-ugen-signature"] = ("1"):rep(64) }, BODY, { now = TS })
    -- two different timestamps are refused, the same one twice is fine
    fails("TIMESTAMP_INVALID", SECRET, { ["X-UGen-Timestamp"] = tostring(TS), ["x-ugen-timestamp"] = tostring(TS + 1),
      ["X-UGen-Signature"] = good }, BODY, { now = TS })
    assert.is_table(webhook.verify(SECRET, { ["X-UGen-Timestamp"] = tostring(TS), ["x-ugen-timestamp"] = tostring(TS),
      ["X-UGen-Signature"] = good }, BODY, { now = TS }))
    -- a number value is taken as its decimal text
    assert.is_table(webhook.verify(SECRET, { ["X-UGen-Timestamp"] = TS, ["X-UGen-Signature"] = good }, BODY,
      { now = TS }))
  end)

  it("checks against the right secret while many secrets are in use (key cache)", function()
    local secrets = {}
    for i = 1, 20 do secrets[i] = SECRET .. i end
    for round = 1, 3 do
      for i, sec in ipairs(secrets) do
        local h = { ["X-UGen-Timestamp"] = tostring(TS), ["X-UGen-Signature"] = webhook.sign(sec, TS, BODY) }
        assert.is_table(webhook.verify(sec, h, BODY, { now = TS }), "round " .. round .. " secret " .. i)
        local other = secrets[i % #secrets + 1]
        local ev, err = webhook.verify(other, h, BODY, { now = TS })
        assert.is_nil(ev)
        assert.equal("SIGNATURE_MISMATCH", err.code)
      end
    end
  end)

  it("gives kind decode for a correctly signed body that is not JSON", function()
    local body = "not json"
    local ev, err = webhook.verify(SECRET, signed(TS, body), body, { now = TS })
    assert.is_nil(ev)
    assert.equal("decode", err.kind)
  end)

  it("raises on wrong argument types (secret, headers, opts)", function()
    assert.has_error(function() webhook.verify(nil, {}, BODY) end,
      "bad argument #1 to 'verify' (string or list of strings expected, got nil)")
    assert.has_error(function() webhook.verify("", {}, BODY) end,
      "bad argument #1 to 'verify' (webhook secret is empty)")
    assert.has_error(function() webhook.verify(SECRET, "x", BODY) end,
      "bad argument #2 to 'verify' (table expected, got string)")
    assert.has_error(function() webhook.verify(SECRET, {}, BODY, { tolerance = "5" }) end,
      "bad argument #4 to 'verify' (opts.tolerance must be a finite number >= 0 or false, got string)")
  end)
end)

-- Edge cases from the adversarial review (issue 12, item 10): identical results
-- on 5.1, 5.3, 5.4 and LuaJIT, never an error raised from inside verify.
describe("ugen.webhook.verify edge cases", function()
  local function signed_ts(ts, body)
    return { ["X-UGen-Timestamp"] = ts, ["X-UGen-Signature"] = webhook.sign(SECRET, ts, body or BODY) }
  end

  it("a correctly signed unix timestamp of 2^53 or more is nil, err TIMESTAMP_INVALID (no raise)", function()
    -- 2^53, 2^63 - 1 (an integer on 5.3+), 2^63 (a float there), 2^64, 20 digits, 400 digits (inf)
    local huge = { "9007199254740992", "9223372036854775807", "9223372036854775808", "18446744073709551616",
                   "12345678901234567890", "1" .. ("0"):rep(400), "9223372036854775808.5", " 9223372036854775808 " }
    for _, ts in ipairs(huge) do
      for _, opts in ipairs({ { now = TS }, { tolerance = false }, {} }) do
        local ok, ev, err = pcall(webhook.verify, SECRET, signed_ts(ts), BODY, opts)
        assert.is_true(ok, ts .. ": " .. tostring(ev))
        assert.is_nil(ev, ts)
        assert.equal("signature", err.kind, ts)
        assert.equal("TIMESTAMP_INVALID", err.code, ts)
        assert.matches("out of range", err.message)
      end
      assert.is_nil(webhook.parse_timestamp(ts), ts)
    end
    -- just below: a time (out of tolerance unless the check is off)
    local max = "9007199254740991"
    local e = fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed_ts(max), BODY, { now = TS })
    assert.matches("^X%-UGen%-Timestamp is 9007197477027827s after", e.message)
    assert.is_table(webhook.verify(SECRET, signed_ts(max), BODY, { tolerance = false }))
  end)

  it("formats any finite age without raising, in floats (no integer wrap-around on 5.3/5.4)", function()
    local e = fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = 1e300 })
    assert.matches("^X%-UGen%-Timestamp is %d+s before the current time", e.message)
    e = fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = -1e300 })
    assert.matches("^X%-UGen%-Timestamp is %d+s after the current time", e.message)
    -- an integer now: math.mininteger - TS wraps to a large positive integer on 5.3/5.4
    e = fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = rawget(math, "mininteger") or -2^63 })
    assert.matches("^X%-UGen%-Timestamp is %d+s after the current time", e.message)
    e = fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = rawget(math, "maxinteger") or 2^63 })
    assert.matches("^X%-UGen%-Timestamp is %d+s before the current time", e.message)
    assert.is_table(webhook.verify(SECRET, signed(), BODY, { now = TS + 1e15, tolerance = 1e300 }))
  end)

  it("opts.now NaN or +-inf is a bad-argument error raised at the call site", function()
    local stale = signed(TS - 10 ^ 6)     -- would be refused by any real clock
    for _, now in ipairs({ 0 / 0, -(0 / 0), math.huge, -math.huge }) do
      local ok, msg = pcall(webhook.verify, SECRET, stale, BODY, { now = now })
      assert.is_false(ok, tostring(now))
      assert.matches("bad argument #4 to 'verify' %(opts.now must be a finite number %(epoch seconds%), got %-?n?[ai]n",
        msg)
      -- a direct call: the position is this file's line, not webhook.lua's
      ok, msg = pcall(function()
        local ev = webhook.verify(SECRET, stale, BODY, { now = now })   -- not a tail call: a line to name
        return ev
      end)
      assert.is_false(ok)
      assert.matches("webhook_spec%.lua:%d+: bad argument #4", msg)
    end
    assert.has_error(function() webhook.verify(SECRET, stale, BODY, { now = "1" }) end,
      "bad argument #4 to 'verify' (opts.now must be a finite number (epoch seconds), got string)")
  end)

  it("opts.tolerance NaN, +-inf or negative raises; false is the one way to turn the check off", function()
    for _, tol in ipairs({ 0 / 0, math.huge, -math.huge, -1, -0.5 }) do
      local ok, msg = pcall(webhook.verify, SECRET, signed(), BODY, { now = TS, tolerance = tol })
      assert.is_false(ok, tostring(tol))
      assert.matches("bad argument #4 to 'verify' %(opts.tolerance must be a finite number >= 0 or false, got ", msg)
    end
    assert.is_table(webhook.verify(SECRET, signed(), BODY, { now = TS, tolerance = 0 }))
    fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, signed(), BODY, { now = TS + 1, tolerance = 0 })
    assert.is_true(webhook.valid_tolerance(false))
    assert.is_false(webhook.valid_tolerance(true))
    assert.is_false(webhook.valid_tolerance(math.huge))
  end)

  it("a correctly signed body that is not a JSON object (array, scalar) is nil, err kind decode", function()
    for _, body in ipairs({ "[1,2]", "[]", ' [{"event":"job.completed","job_id":"j"}]', '"job.completed"', "1",
                            "true", "null", "" }) do
      local ev, err = webhook.verify(SECRET, signed(TS, body), body, { now = TS })
      assert.is_nil(ev, body)
      assert.equal("decode", err.kind, body)
      assert.equal("BODY_INVALID", err.code, body)
      assert.matches("not a JSON object", err.message)
      -- authenticated only: decode = false does not look at the JSON
      assert.is_true(webhook.verify(SECRET, signed(TS, body), body, { now = TS, decode = false }))
    end
    for _, body in ipairs({ "{}", ' \t\r\n{"event":"job.completed"}' }) do
      assert.is_table(webhook.verify(SECRET, signed(TS, body), body, { now = TS }), body)
    end
  end)
end)

describe("ugen.webhook.verify with a list of secrets (rotation)", function()
  local OLD = "0ld-secret-0ld-secret-0ld-secret"
  local OTHER = "another-secret-another-secret-xx"

  it("accepts a signature made with any secret and says which one matched", function()
    local h_new = signed(TS)
    local h_old = { ["X-UGen-Timestamp"] = tostring(TS), ["X-UGen-Signature"] = webhook.sign(OLD, TS, BODY) }
    local ev, idx = webhook.verify({ SECRET, OLD }, h_new, BODY, { now = TS })
    assert.equal("job.completed", ev.event); assert.equal(1, idx)
    ev, idx = webhook.verify({ SECRET, OLD }, h_old, BODY, { now = TS })
    assert.equal("job.completed", ev.event); assert.equal(2, idx)
    -- prefixed / uppercase / several signatures go the same way
    local h = { ["x-ugen-timestamp"] = tostring(TS),
                ["x-ugen-signature"] = { "sha256=" .. ("0"):rep(64), "v1=" .. webhook.sign(OLD, TS, BODY):upper() } }
    local ok, i2 = webhook.verify({ OTHER, SECRET, OLD }, h, BODY, { now = TS, decode = false })
    assert.is_true(ok); assert.equal(3, i2)
    fails("SIGNATURE_MISMATCH", { OTHER }, h_old, BODY, { now = TS })
    -- after the signature, the index is still reported for failures later on
    local bad, err = webhook.verify({ OTHER, OLD }, h_old, BODY, { now = TS + 10000 })
    assert.is_nil(bad); assert.equal("TIMESTAMP_OUT_OF_TOLERANCE", err.code)
    assert.is_nil(tostring(err):find(OLD, 1, true))
  end)

  it("keeps the one-secret return shape: the event alone", function()
    assert.equal(1, select("#", webhook.verify(SECRET, signed(TS), BODY, { now = TS })))
    assert.equal(2, select("#", webhook.verify({ SECRET }, signed(TS), BODY, { now = TS })))
  end)

  it("compares every secret, with no early exit on the first match", function()
    local n = 0
    local real = crypto.consteq
    crypto.consteq = function(a, b) n = n + 1; return real(a, b) end
    local ok, res, idx = pcall(webhook.verify, { SECRET, OLD, OTHER }, signed(TS), BODY, { now = TS })
    crypto.consteq = real
    assert.is_true(ok, tostring(res))
    assert.equal(1, idx)
    assert.equal(3, n)
  end)

  it("raises on an empty list or a bad entry", function()
    assert.has_error(function() webhook.verify({}, signed(TS), BODY) end,
      "bad argument #1 to 'verify' (the list of webhook secrets is empty)")
    assert.has_error(function() webhook.verify({ SECRET, "" }, signed(TS), BODY) end,
      "bad argument #1 to 'verify' (secret #2 must be a non-empty string, got empty string)")
    assert.has_error(function() webhook.verify({ SECRET, 5 }, signed(TS), BODY) end)
  end)
end)

describe("ugen.webhook.verify replay protection (opts.replay)", function()
  local function delivery(ts)
    return signed(ts), BODY
  end

  it("refuses a replayed delivery and accepts a new one (memory store)", function()
    local store = webhook.memory_store()
    local h = delivery(TS)
    assert.is_table(webhook.verify(SECRET, h, BODY, { now = TS, replay = store }))
    local err = fails("REPLAYED", SECRET, h, BODY, { now = TS + 1, replay = store })
    assert.is_false(err.retryable)
    -- a new delivery (U-Gen signs every attempt afresh: a new timestamp, a new signature)
    assert.is_table(webhook.verify(SECRET, delivery(TS + 1), BODY, { now = TS + 1, replay = store }))
    -- a rotated list records the same signature: still a replay
    local ok, e2 = webhook.verify({ "other-secret-xxxxxxxxxxxxxxxxxxxx", SECRET }, h, BODY,
      { now = TS, replay = store })
    assert.is_nil(ok); assert.equal("REPLAYED", e2.code)
  end)

  it("records only deliveries that pass every other check", function()
    local store = webhook.memory_store()
    local h = delivery(TS)
    fails("TIMESTAMP_OUT_OF_TOLERANCE", SECRET, h, BODY, { now = TS + 1000, replay = store })
    fails("SIGNATURE_MISMATCH", "wrong-secret", h, BODY, { now = TS, replay = store })
    assert.equal(0, store:size())
    assert.is_table(webhook.verify(SECRET, h, BODY, { now = TS, replay = store }))
    assert.equal(1, store:size())
  end)

  it("forgets a delivery after its ttl (memory store with a given clock)", function()
    local t = 0
    local store = webhook.memory_store{ now = function() return t end }
    local h = delivery(TS)
    assert.is_table(webhook.verify(SECRET, h, BODY, { now = TS, replay = store, replay_ttl = 5 }))
    t = 4.9
    fails("REPLAYED", SECRET, h, BODY, { now = TS, replay = store, replay_ttl = 5 })
    t = 5
    assert.is_table(webhook.verify(SECRET, h, BODY, { now = TS, replay = store, replay_ttl = 5 }))
    -- the store alone
    assert.is_false(store:seen("k", 1)); assert.is_true(store:seen("k", 1))
    t = 6; assert.is_false(store:seen("k", 1))
  end)

  it("memory_store is bounded: at most max keys, expired ones dropped first, then the oldest", function()
    local t = 0
    local store = webhook.memory_store{ max = 3, now = function() return t end }
    for i = 1, 3 do assert.is_false(store:seen("a" .. i, 100)) end
    assert.equal(3, store:size())
    assert.is_false(store:seen("a4", 100))       -- a1 (the oldest) goes
    assert.equal(3, store:size())
    assert.is_true(store:seen("a2", 100))
    assert.is_false(store:seen("a1", 100))       -- forgotten, recorded again (a2 goes)
    assert.is_true(store:seen("a4", 100))
    -- a short-lived key recorded again and again behind a long-lived one: the queue stays bounded
    for i = 1, 1000 do
      t = i
      store:seen("short", 0.5)
      assert.is_true(store.tail - store.head + 1 <= 2 * 3)
    end
    assert.is_true(store:size() <= 3)
    for i = 1, 10000 do store:seen("k" .. i, 1e9) end
    assert.equal(3, store:size())
    assert.is_true(store.tail - store.head + 1 <= 2 * 3)
  end)

  it("uses a user store object: key from the signature, ttl 2 x tolerance, failures closed", function()
    local calls, seen = {}, {}
    local store = {}
    function store:seen(key, ttl)                  -- like Redis SET key 1 NX EX ttl
      assert.equal(store, self)
      calls[#calls + 1] = { key, ttl }
      if seen[key] then return true end
      seen[key] = true
      return false
    end
    local h = delivery(TS)
    assert.is_table(webhook.verify(SECRET, h, BODY, { now = TS, replay = store }))
    assert.same({ { "ugen:sig:" .. h["X-UGen-Signature"], 600 } }, calls)
    assert.equal(webhook.replay_key(h["X-UGen-Signature"]), calls[1][1])
    fails("REPLAYED", SECRET, h, BODY, { now = TS, replay = store })
    assert.is_table(webhook.verify(SECRET, delivery(TS + 1), BODY, { now = TS, tolerance = 10, replay = store }))
    assert.equal(20, calls[3][2])
    webhook.verify(SECRET, delivery(TS + 2), BODY, { now = TS, tolerance = false, replay = store })
    assert.equal(600, calls[4][2])
    webhook.verify(SECRET, delivery(TS + 3), BODY, { now = TS + 3, tolerance = 0.2, replay = store })
    assert.equal(1, calls[5][2])                   -- whole seconds, at least 1
    -- a store that is down: fail closed
    local down = { seen = function() return nil, "connection refused" end }
    local ev, err = webhook.verify(SECRET, delivery(TS + 4), BODY, { now = TS + 4, replay = down })
    assert.is_nil(ev)
    assert.equal("signature", err.kind); assert.equal("REPLAY_STORE_UNAVAILABLE", err.code)
    assert.is_true(err.retryable)
    assert.matches("connection refused", err.message)
  end)

  it("raises on a replay option that is not a store, or a bad replay_ttl", function()
    assert.has_error(function() webhook.verify(SECRET, signed(TS), BODY, { replay = {} }) end,
      "bad argument #4 to 'verify' (opts.replay must be a store with a seen(key, ttl) method, got table)")
    assert.has_error(function() webhook.verify(SECRET, signed(TS), BODY, { replay = webhook.memory_store(),
      replay_ttl = 0 }) end, "bad argument #4 to 'verify' (opts.replay_ttl must be a positive number (seconds), got 0)")
    assert.has_error(function() webhook.memory_store{ max = 0 } end)
    assert.has_error(function() webhook.memory_store{ size = 3 } end)
  end)
end)
