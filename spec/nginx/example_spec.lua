-- examples/openresty as shipped (only the port, the paths and one worker
-- changed), against the sandbox: submit jobs, receive their signed webhooks.
local S = require "support.sandbox"
local N = require "support.nginx"
local ugen = require "ugen"
local socket = require "socket"

local function render(dir, port)
  local conf = assert(N.read_file(N.root .. "/examples/openresty/nginx.conf"))
  local function sub(from, to)
    local a, b = conf:find(from, 1, true)
    assert(a, "examples/openresty/nginx.conf no longer contains " .. from)
    conf = conf:sub(1, a - 1) .. to .. conf:sub(b + 1)
  end
  sub("listen 127.0.0.1:8080;", "listen 127.0.0.1:" .. port .. ";")
  sub("worker_processes auto;", "worker_processes 1;" .. (N.capture("id -u"):match("^0") and "\nuser root;" or ""))
  conf = conf:gsub("%$prefix/%.%./%.%./", N.root .. "/")
  conf = conf:gsub("%$prefix/lua/", N.root .. "/examples/openresty/lua/")
  assert(os.execute("mkdir -p " .. N.q(dir .. "/logs") .. " " .. N.q(dir .. "/tmp")))
  return conf
end

describe("examples/openresty (nginx + sandbox)", function()
  local ex, c, secret
  setup(function()
    S.info()
    S.reset("acme")
    secret = ugen.webhook.new_secret()
    ex = N.start{ conf = function(dir, ports) return render(dir, ports[1]) end,
                  pid_file = "logs/nginx.pid", error_log = "logs/error.log",
                  env = { UGEN_BASE_URL = S.info().base_url, UGEN_API_KEY = S.tenant.acme.api_key,
                          UGEN_WEBHOOK_SECRET = secret } }
    c = ugen.new{ base_url = S.info().base_url, api_key = S.tenant.acme.api_key }
    assert(c.webhooks:set{ webhook_url = ex.url("/webhooks/ugen"), webhook_secret = secret })
  end)
  teardown(function()
    if c then c.webhooks:delete() end
    if ex then ex.stop() end
  end)

  it("POST /videos creates a job; its signed webhook lands in the shared dict; GET /videos/<id> shows it", function()
    local r = ex.request{ method = "POST", path = "/videos", json = { product_name = "Example Mug",
      product_image_url = "https://example.com/mug.jpg", segment_count = 1 } }
    assert.equal(202, r.status, r.body)
    local id = r.json.job_id
    assert.is_string(id)
    local st
    local deadline = socket.gettime() + 20
    repeat
      st = ex.request{ path = "/videos/" .. id }
      if st.json and st.json.source == "webhook" then break end
      socket.sleep(0.1)
    until socket.gettime() > deadline
    assert.equal(200, st.status, st.body)
    assert.equal("webhook", st.json.source, st.body .. "\n" .. ex.log():sub(-1500))
    assert.equal("completed", st.json.status)
    assert.equal("job.completed", st.json.event)
  end)

  it("POST /videos/batch awaits every job concurrently", function()
    local products = {
      { product_name = "Batch Mug 1", product_image_url = "https://example.com/1.jpg", segment_count = 1 },
      { product_name = "Batch Mug 2", product_image_url = "https://example.com/2.jpg", segment_count = 1 },
    }
    local r = ex.request{ method = "POST", path = "/videos/batch", timeout = 60,
                          json = { wait = 30, interval = 0.05, products = products } }
    assert.equal(200, r.status, r.body)
    assert.equal(2, #r.json.jobs)
    for _, j in ipairs(r.json.jobs) do assert.equal("completed", j.status, j.error) end
  end)

  it("client-side validation errors come back as 422 with the fields", function()
    local r = ex.request{ method = "POST", path = "/videos",
                          json = { product_image_url = "https://example.com/x.jpg" } }
    assert.equal(422, r.status, r.body)
    assert.is_table(r.json.fields)
  end)

  it("a forged webhook is refused (401)", function()
    local body = '{"event":"job.completed","job_id":"forged","status":"completed"}'
    local r = ex.request{ method = "POST", path = "/webhooks/ugen", body = body,
                          headers = ugen.webhook.headers(ugen.webhook.new_secret(), body) }
    assert.equal(401, r.status)
    -- not recorded: the status page asks the API, which does not know the job
    assert.equal(404, ex.request{ path = "/videos/forged" }.status)
  end)
end)
