-- An OpenResty cluster on 127.0.0.1: a redis-server, three nginx nodes running
-- the SDK (spec/nginx/server/cluster_app.lua: ugen.ngx.webhook_handler with
-- dedupe = { redis = ... }, jobs:wait with via = "webhook") behind a fourth
-- nginx as load balancer, and the sandbox sending its webhooks to the
-- balancer, with its retry schedule and delivery faults (webhook=duplicate,
-- webhook=reset, a 500 from the receiver on the first processing).
-- 300 jobs are created through the nodes and waited for with via =
-- "webhook" while one node is killed with SIGKILL and restarted: every
-- terminal event is handled exactly once across the cluster (the handler's
-- INCR in Redis is 1 for every job), every waiter gets the right final
-- state, and the API sees at least 10x fewer GET /jobs/{id} than 10 s polling
-- would have made. Then: a lost webhook (the safety poll), a handler killed
-- mid-event (the lease), Redis stopped (503, then processed after it is back).
local S = require "support.sandbox"
local N = require "support.nginx"
local R = require "support.redis"
local tools = require "support.tools"
local util = require "support.util"
local ugen = require "ugen"
local json = require "ugen.json"
local crypto = require "ugen.crypto"
local socket = require "socket"

local q, run, read_file, write_file = util.q, util.run, util.read_file, util.write_file

local SPEED = 5            -- sandbox clock: a job takes ~4 s, retries at +0.2, +0.8, +3.2 s
local JOBS = 300
local LEASE = 1.5          -- seconds an event stays "processing" (below the sandbox's last retry, +4.2 s)

local NODE_CONF = [[
${MODULES}
${USER}
worker_processes 2;
daemon on;
master_process on;
pid ${DIR}/nginx.pid;
error_log ${DIR}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${DIR}/tmp/body;
  proxy_temp_path ${DIR}/tmp/proxy;
  fastcgi_temp_path ${DIR}/tmp/fastcgi;
  uwsgi_temp_path ${DIR}/tmp/uwsgi;
  scgi_temp_path ${DIR}/tmp/scgi;
  lua_package_path "${ROOT}/spec/nginx/server/?.lua;${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;;";
  lua_package_cpath "${ROOT}/build/luajit/?.so;;";
  lua_socket_log_errors off;
  lua_shared_dict local_effects 1m;
  lua_shared_dict ugen_webhooks 1m;
  init_by_lua_block { require("cluster_app").init(dofile(ngx.config.prefix() .. "app-config.lua")) }
  server {
    listen 127.0.0.1:${PORT};
    location = /hooks/ugen { content_by_lua_block { require("cluster_app").hook() } }
    location = /job { content_by_lua_block { require("cluster_app").job() } }
    location = /wait_all { content_by_lua_block { require("cluster_app").wait_all() } }
    location = /bad_via { content_by_lua_block { require("cluster_app").bad_via() } }
    location = /bad_config { content_by_lua_block { require("cluster_app").bad_config() } }
    location = /local_effect { content_by_lua_block { require("cluster_app").local_effect() } }
  }
}
]]

local LB_HTTP = [[
  upstream nodes {
    server 127.0.0.1:${N1} max_fails=1 fail_timeout=2s;
    server 127.0.0.1:${N2} max_fails=1 fail_timeout=2s;
    server 127.0.0.1:${N3} max_fails=1 fail_timeout=2s;
  }
  server {
    listen 127.0.0.1:${PORT1};
    location / {
      proxy_pass http://nodes;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      proxy_read_timeout 120s;
    }
  }
]]

local function modules()
  local m = {}
  for _, name in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
    local p = "/usr/lib/nginx/modules/" .. name
    if read_file(p) then m[#m + 1] = "load_module " .. p .. ";" end
  end
  return table.concat(m, "\n")
end

local function children(pid)
  local out = {}
  for c in (read_file("/proc/" .. pid .. "/task/" .. pid .. "/children") or ""):gmatch("%d+") do out[#out + 1] = c end
  return out
end

local function port_open(port)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

local redis, nodes, lb, secret, client, node_cfg

local function start_node(i, cfg)
  local srv = N.start{
    ports = 1,
    conf = function(dir, ports)
      local c = { name = "node" .. i }
      for k, v in pairs(cfg) do c[k] = v end
      write_file(dir .. "/app-config.lua",
        ("return require('ugen.json').decode(%q, true)\n"):format(assert(json.encode(c))))
      local vars = { MODULES = modules(), USER = util.capture("id -u"):match("^0%s*$") and "user root;" or "",
                     DIR = dir, ROOT = N.root, PORT = ports[1] }
      return (NODE_CONF:gsub("%${([%w_]+)}", function(k) return assert(vars[k], k) end))
    end,
  }
  -- SIGKILL to the master and its workers: the node is gone at once, mid-request
  function srv.kill9()
    local pids = children(srv.pid)
    pids[#pids + 1] = srv.pid
    run("kill -KILL " .. table.concat(pids, " ") .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    while port_open(srv.port(1)) and socket.gettime() < deadline do socket.sleep(0.02) end
  end
  function srv.restart()
    assert(run(("nginx -p %s -c %s -e %s 2>>%s"):format(q(srv.dir .. "/"), q(srv.dir .. "/nginx.conf"),
      q(srv.dir .. "/error.log"), q(srv.dir .. "/start.err"))))
    local deadline = socket.gettime() + 10
    while not port_open(srv.port(1)) and socket.gettime() < deadline do socket.sleep(0.02) end
    srv.pid = tonumber((read_file(srv.dir .. "/nginx.pid") or ""):match("%d+"))
    assert(srv.pid and port_open(srv.port(1)), "node did not restart:\n" .. srv.log():sub(-2000))
  end
  return srv
end

-- GET through the balancer (or a node) -> decoded JSON body
local function get(srv, path, timeout)
  local r = srv.request{ path = path, timeout = timeout or 60 }
  assert(r.status == 200, path .. ": HTTP " .. r.status .. " " .. tostring(r.body))
  return r.json
end

-- a signed synthetic delivery POSTed to one node; every call a new timestamp,
-- so a new signature (a sender's retry, not a replay)
local tick = 0
local function deliver(node, event)
  local body = assert(json.encode(event))
  tick = tick + 1
  return node.request{ method = "POST", path = "/hooks/ugen", body = body,
                       headers = ugen.webhook.headers(secret, body, os.time() + tick) }
end

local function effect(id) return tonumber(redis.cmd("GET", "effect:" .. id)) end

-- GET /api/v1/jobs/<id> lines in the sandbox's access log, for the given ids
local function job_gets(ids)
  local n = 0
  for line in (read_file(S.info().dir .. "/access.log") or ""):gmatch("[^\n]+") do
    local id = line:match('"GET /api/v1/jobs/([%x%-]+)[ ?]')
    if id and ids[id] then n = n + 1 end
  end
  return n
end

describe("a cluster of 3 OpenResty nodes + Redis + a balancer (webhook-driven waits)", function()
  setup(function()
    tools.need("nginx"); tools.need("curl")
    redis = R.start()
    local info = S.info()
    S.reset("default")
    S.speed(SPEED)
    local lim = S.request{ method = "PUT", url = info.origin .. "/_sandbox/limits",
                           json = { concurrent_limit = 1000, daily_limit = 100000 } }
    assert(lim.status == 200, lim.body)
    secret = ugen.webhook.new_secret()
    local cfg = { secret = secret, redis_port = redis.port, lease = LEASE, base_url = info.base_url,
                  api_key = S.tenant.default.api_key, wait_timeout = 60 }
    node_cfg = cfg
    nodes = { start_node(1, cfg), start_node(2, cfg), start_node(3, cfg) }
    lb = N.start{ ports = 1, http = LB_HTTP,
                  vars = { N1 = nodes[1].port(1), N2 = nodes[2].port(1), N3 = nodes[3].port(1) } }
    client = ugen.new{ base_url = info.base_url, api_key = S.tenant.default.api_key }
    assert(client.webhooks:set{ webhook_url = lb.url("/hooks/ugen"), webhook_secret = secret })
  end)
  teardown(function()
    if client then client.webhooks:delete() end
    S.speed()
    S.reset("default")
    for _, n in ipairs(nodes or {}) do n.stop() end
    if lb then lb.stop() end
    if redis then redis.stop() end
  end)

  it("300 jobs, a node killed and restarted: each terminal event handled once, every waiter right, "
    .. "10x fewer polls", function()
    local dir = N.tmpdir()
    local run_id = crypto.uuid4():sub(1, 8)
    -- per job: its delivery fault and whether it fails; every 4th job fails (job.failed)
    local FAULTS = { "webhook=duplicate", "webhook=reset", nil, "webhook=duplicate", nil }
    local lines, want = {}, {}
    for i = 1, JOBS do
      local key = run_id .. "-" .. i
      local path = "/job?key=" .. key
      local f = FAULTS[i % 5 + 1]
      if f then path = path .. "&fault=" .. f end
      if i % 5 == 2 then path = path .. "&failonce=1" end   -- the receiver answers 500 the first time
      if i % 4 == 0 then path = path .. "&fail=1" end
      want[key] = i % 4 == 0 and "failed" or "completed"
      lines[#lines + 1] = ("url = %q\noutput = %q\n"):format(lb.url(path), dir .. "/r" .. i .. ".json")
    end
    write_file(dir .. "/curl.cfg", table.concat(lines))
    local t0 = socket.gettime()
    assert(run(("( curl -sS --parallel --parallel-max 100 --max-time 80 --retry 3 --retry-all-errors "
      .. "--retry-delay 1 -K %s 2>%s; echo $? > %s ) >/dev/null 2>&1 &")
      :format(q(dir .. "/curl.cfg"), q(dir .. "/curl.err"), q(dir .. "/curl.rc"))))
    -- mid-run: node 2 is killed (its waiters' requests go to other nodes) and comes back
    socket.sleep(5)
    nodes[2].kill9()
    socket.sleep(2)
    nodes[2].restart()
    local deadline = socket.gettime() + 85
    while not read_file(dir .. "/curl.rc") and socket.gettime() < deadline do socket.sleep(0.2) end
    local elapsed = socket.gettime() - t0
    assert.equal("0", (read_file(dir .. "/curl.rc") or "(curl still running)"):match("%S+"),
      read_file(dir .. "/curl.err"))

    local ids, baseline, by_node, from_webhook = {}, 0, {}, 0
    for i = 1, JOBS do
      local r = json.decode(read_file(dir .. "/r" .. i .. ".json") or "")
      assert.is_table(r, "no answer for job #" .. i)
      assert.equal(want[r.key], r.status, "job #" .. i .. " " .. tostring(r.job_id))
      ids[r.job_id] = true
      by_node[r.node] = (by_node[r.node] or 0) + 1
      if r.from_webhook then from_webhook = from_webhook + 1 end
      -- polling every 10 s (sandbox time, 10 / SPEED s here): a GET at once, then one per interval
      baseline = baseline + 1 + math.floor(r.waited / (10 / SPEED))
    end
    local n = 0
    for id in pairs(ids) do
      n = n + 1
      -- exactly once: the handler's side effect ran once for this job's terminal event, on some node
      assert.equal(1, effect(id), "job " .. id .. " handled by "
        .. redis.cmd("LRANGE", "handled_by:" .. id, "0", "-1"))
    end
    assert.equal(JOBS, n)
    local gets = job_gets(ids)
    print(("\n  cluster: %d jobs in %.1fs; answered by %s; %d from the webhook; GET /jobs/{id}: %d "
      .. "(10 s polling: %d)"):format(JOBS, elapsed, json.encode(by_node), from_webhook, gets, baseline))
    assert.is_true(gets * 10 <= baseline, gets .. " GETs vs " .. baseline)
    assert.equal(JOBS, from_webhook)
    -- the faults really happened: duplicated and reset deliveries, 500s, and the killed node's 502s
    local deliveries = S.deliveries("default")
    local dups, resets, s500 = 0, 0, 0
    local per_job = {}
    for _, d in ipairs(deliveries) do
      if ids[d.job_id] then
        per_job[d.job_id] = (per_job[d.job_id] or 0) + 1
        for _, a in ipairs(d.attempts) do
          if type(a.error) == "string" and a.error:find("reset by the sandbox", 1, true) then resets = resets + 1 end
          if a.response_status == 500 then s500 = s500 + 1 end
        end
      end
    end
    for _, c in pairs(per_job) do if c == 2 then dups = dups + 1 end end
    assert.is_true(dups >= 100 and resets >= 50 and s500 >= 50,
      ("dups %d resets %d 500s %d"):format(dups, resets, s500))
  end)

  it("wait_all with via = \"webhook\" parks until the events come, on any node", function()
    local ids = {}
    for i = 1, 6 do
      local job = assert(client.jobs:create{ product_name = i % 3 == 0 and "Mug [fail]" or "Mug",
        product_image_url = "https://example.com/m.png", segment_count = 1 })
      ids[i] = job.job_id
    end
    local r = get(nodes[3], "/wait_all?ids=" .. table.concat(ids, ","))
    assert.same({ "completed", "completed", "failed", "completed", "completed", "failed" }, r.states)
    assert.is_true(r.waited > 0.5, "it did wait for the jobs (" .. r.waited .. " s)")
    local set = {}
    for _, id in ipairs(ids) do set[id] = true; assert.equal(1, effect(id)) end
    assert.equal(0, job_gets(set))       -- no poll at all: the webhook told every waiter
  end)

  it("a lost webhook does not hang a waiter: the safety poll finds the job", function()
    local r = get(lb, "/job?lost=1&interval=1&key=" .. crypto.uuid4())
    assert.equal("completed", r.status)
    assert.is_false(r.from_webhook)
    assert.is_true(r.waited < 10, "waited " .. r.waited)
    assert.is_nil(effect(r.job_id))      -- no node ever saw its event
  end)

  it("dedupe = { redis = ... } options are checked at the call (no secret in the message)", function()
    local e = get(nodes[1], "/bad_config").errors
    assert.matches("dedupe.redis.port must be an integer 1-65535", e[1], 1, true)
    assert.matches("dedupe.redis: unknown option 'bogus'", e[2], 1, true)
    assert.matches("dedupe.redis.ttl must be a positive number", e[3], 1, true)
    assert.matches("dedupe: unknown option 'memcached'", e[4], 1, true)
    assert.matches("dedupe must be a lua_shared_dict name or { redis = {...} }, got number", e[5], 1, true)
    assert.matches("lease must be a positive number", e[6], 1, true)
    assert.matches("dedupe.redis.fail_open must be a boolean", e[7], 1, true)
    assert.is_nil(e[7]:find("hunter2", 1, true))
    for _, m in ipairs(e) do assert.matches("webhook_handler", m, 1, true) end
  end)

  it("a lost webhook, no poll before the deadline: the poll just before the deadline finds the job", function()
    -- the job takes ~4 s; timeout 6 s, interval 60 s: the one poll starts 0.6 s before the deadline
    local r = get(lb, "/job?lost=1&timeout=6&key=" .. crypto.uuid4())
    assert.equal("completed", r.status, r.kind)
    assert.is_false(r.from_webhook)
    assert.is_true(r.waited > 5 and r.waited < 8, "waited " .. r.waited)
    assert.equal(1, job_gets({ [r.job_id] = true }))
  end)

  it("via must be \"poll\" or \"webhook\"; \"webhook\" outside nginx is a clear error", function()
    local r = get(nodes[1], "/bad_via")
    assert.is_false(r.ok)
    assert.matches("opts.via must be \"poll\" or \"webhook\"", r.message, 1, true)
    local ok, e = pcall(client.jobs.wait, client.jobs, "x", { via = "webhook" })
    assert.is_false(ok)
    assert.matches("works inside OpenResty only", tostring(e), 1, true)
    ok, e = pcall(client.jobs.wait_all, client.jobs, { "x" }, { via = "webhook" })
    assert.is_false(ok)
    assert.matches("wait_all", tostring(e), 1, true)
    -- inside nginx, but no webhook handler with dedupe.redis was built on this node
    local L = require "support.lua_in_nginx"
    local srv = L.start{}
    finally(srv.stop)
    local file = N.tmpdir() .. "/no_handler.lua"
    write_file(file, [[
      local c = require("ugen").new{ base_url = "http://127.0.0.1:9/api/v1", api_key = "k" }
      local ok, e = pcall(c.jobs.wait, c.jobs, "x", { via = "webhook" })
      ngx.say(tostring(ok), " ", tostring(e))
    ]])
    r = srv.run_file(file)
    assert.equal(200, r.status, r.body)
    assert.matches("^false .*needs this node's webhook handler", r.body)
  end)

  it("a handler killed mid-event: a retry meanwhile is 409 IN_PROGRESS, after the lease it is processed once",
    function()
    local id = crypto.uuid4()
    local ev = { event = "job.completed", job_id = id, status = "completed", sleep = 5, sleep_on = "node1",
                 timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") }
    local dir = N.tmpdir()
    local body = assert(json.encode(ev))
    local h = ugen.webhook.headers(secret, body, os.time())
    -- the first delivery reaches node 1, whose handler hangs (then the node dies)
    write_file(dir .. "/body.json", body)
    run(("curl -sS -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/json' -H %s -H %s "
      .. "--data-binary @%s %s >/dev/null 2>&1 &"):format(q("X-UGen-Timestamp: " .. h["X-UGen-Timestamp"]),
      q("X-UGen-Signature: " .. h["X-UGen-Signature"]), q(dir .. "/body.json"), q(nodes[1].url("/hooks/ugen"))))
    assert.is_true(S.eventually(function()
      return redis.cmd("GET", "ugen:event:job.completed:" .. id) == "processing"
    end, 5))
    local r = deliver(nodes[2], ev)                    -- the sender's retry, on another node
    assert.equal(409, r.status, r.body)
    assert.equal("IN_PROGRESS", r.json.error)
    nodes[1].kill9()
    socket.sleep(LEASE + 0.3)
    r = deliver(nodes[3], ev)                          -- the lease expired: processed now, once
    assert.equal(200, r.status, r.body)
    assert.is_nil(r.json.duplicate)
    assert.equal(1, effect(id))
    r = deliver(nodes[2], ev)
    assert.equal(200, r.status); assert.is_true(r.json.duplicate)
    assert.equal(1, effect(id))
    nodes[1].restart()
  end)

  it("one node, lua_shared_dict store: workers killed mid-event, the event is processed after the lease", function()
    local cfg = { dict = true }
    for k, v in pairs(node_cfg) do if k ~= "fail_open" then cfg[k] = v end end
    local node = start_node(5, cfg)
    finally(node.stop)
    local id = crypto.uuid4()
    local ev = { event = "job.completed", job_id = id, status = "completed", sleep = 5, sleep_on = "node5",
                 timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") }
    local body = assert(json.encode(ev))
    local h = ugen.webhook.headers(secret, body, os.time())
    local dir = N.tmpdir()
    write_file(dir .. "/body.json", body)
    run(("curl -sS -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/json' -H %s -H %s "
      .. "--data-binary @%s %s >/dev/null 2>&1 &"):format(q("X-UGen-Timestamp: " .. h["X-UGen-Timestamp"]),
      q("X-UGen-Signature: " .. h["X-UGen-Signature"]), q(dir .. "/body.json"), q(node.url("/hooks/ugen"))))
    socket.sleep(0.5)
    local r = deliver(node, ev)
    assert.equal(409, r.status, r.body)
    assert.equal("IN_PROGRESS", r.json.error)
    -- SIGKILL the workers (not the master: it starts new ones, the shared dict survives)
    local old = children(node.pid)
    run("kill -KILL " .. table.concat(old, " "))
    assert.is_truthy(S.eventually(function()
      local now = children(node.pid)
      return #now == #old and now[1] ~= old[1] and port_open(node.port(1))
    end, 5))
    socket.sleep(LEASE + 0.3)
    r = deliver(node, ev)
    assert.equal(200, r.status, r.body)
    assert.is_nil(r.json.duplicate)
    assert.equal(1, effect(id))
    r = deliver(node, ev)
    assert.equal(200, r.status); assert.is_true(r.json.duplicate)
    assert.equal(1, effect(id))
  end)

  it("Redis down: deliveries are refused with 503 (the API retries), processed once Redis is back; "
    .. "fail_open = true processes them anyway", function()
    local id = crypto.uuid4()
    local ev = { event = "job.completed", job_id = id, status = "completed",
                 timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") }
    local open_cfg = { fail_open = true }
    for k, v in pairs(node_cfg) do open_cfg[k] = v end
    local open_node = start_node(4, open_cfg)
    finally(open_node.stop)
    redis.stop()
    local ok, err = pcall(function()
      for _, n in ipairs(nodes) do
        local r = deliver(n, ev)
        assert.equal(503, r.status, r.body)
        assert.equal("DEDUPE_UNAVAILABLE", r.json.error)
      end
      local r = deliver(open_node, ev)
      assert.equal(200, r.status, r.body)
      assert.equal(1, get(open_node, "/local_effect?id=" .. id).n)
    end)
    redis.restart()
    assert(ok, err)
    local r = deliver(nodes[2], ev)
    assert.equal(200, r.status, r.body)
    assert.equal(1, effect(id))
    -- the workers' subscribers reconnect: a webhook wait works again afterwards
    local job = assert(client.jobs:create{ product_name = "After", product_image_url = "https://example.com/m.png",
                                           segment_count = 1 })
    local w = get(nodes[1], "/wait_all?ids=" .. job.job_id)
    assert.same({ "completed" }, w.states)
  end)
end)
