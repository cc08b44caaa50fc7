-- bench/lib.lua: helpers shared by the bench scripts (run them through bench/run.sh or
-- `make bench`): a loopback nginx serving a fixed JSON job, timing, ratios, RSS.
local socket = require "socket"

local M = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.q = q

function M.now() return socket.gettime() end
-- CPU time of this process (user + system). The CPU-bound benches (webhook, JSON) time with it,
-- and their C baselines with CLOCK_PROCESS_CPUTIME_ID: on a shared VM, time the hypervisor steals
-- (several percent under load here, in bursts) then counts for neither side.
function M.cpu() return os.clock() end

function M.interp()
  if type(jit) == "table" then return "luajit" end
  return _VERSION:gsub("Lua ", "lua")
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end
M.write_file = write_file

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- A job object as the API returns it (GET /jobs/{id}), ~1 KB.
function M.job(i)
  return {
    job_id = string.format("550e8400-e29b-41d4-a716-%012d", i or 0),
    status = "completed", current_stage = "complete", progress_percent = 100,
    product_name = "Ceramic Coffee Mug (350 ml, matte black)",
    product_image_url = "https://cdn.example.com/products/mug-black-350.png",
    video_model = "kling3_std", persona_id = "09d3a33a-0b5e-4c4f-9d6a-2f1f2b7b8f10",
    segment_count = 3, segment_duration = 5, aspect_ratio = "9:16", video_resolution = "standard",
    interaction_mode = "holding", caption_style = "bold_center", music_enabled = true,
    qai_enabled = true, qai_mode = "standard", idempotency_key = "2d7f1c1e-5b8a-4f0e-9a57-0c2b1f6e9d3a",
    credits_estimated = 181, credits_reserved = 181, credits_consumed = 166,
    credit_breakdown = { video = 90, keyframes = 32, voice = 15, music = 15, captions = 0,
                         post_processing = 10, qa_buffer = 19 },
    final_video_url = "https://cdn.example.com/videos/550e8400-e29b-41d4-a716-446655440000.mp4",
    thumbnail_url = "https://cdn.example.com/thumbnails/550e8400-e29b-41d4-a716-446655440000.jpg",
    created_at = "2026-05-02T09:12:44Z", updated_at = "2026-05-02T09:15:02Z",
    completed_at = "2026-05-02T09:15:02Z",
  }
end
-- the same with the JSON nulls the real API sends for absent values
M.JOB_NULLS = { "webhook_url", "error_message", "failed_stage", "failure_category", "stop_at_stage" }

-- Start nginx on a free loopback port serving `body` (application/json) for every
-- /api/v1/jobs/... GET. -> { url = base_url, stop = fn }
-- opts.tls: HTTPS + HTTP/2 ("listen ssl http2") with a certificate for 127.0.0.1 from a
-- private CA made in its directory (ugen.sandbox.tls, the TLS sandbox's own machinery);
-- srv.cainfo is that CA's file.
function M.nginx(body, opts)
  opts = opts or {}
  local name = os.tmpname()
  os.remove(name)
  local dir = name .. ".ugen-bench"
  assert(os.execute("mkdir -p " .. q(dir .. "/tmp") .. " " .. q(dir .. "/logs")))
  local port = free_port()
  write_file(dir .. "/job.json", body)
  local listen, cainfo = "", nil
  if opts.tls then
    local tls = require("ugen.sandbox").tls
    local ca = assert(tls.ca(dir .. "/ca"))
    local cert = assert(tls.issue(ca, { name = "bench", dns = { "localhost" }, ip = { "127.0.0.1" } }))
    listen = (" ssl http2;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n"
      .. "    ssl_session_cache shared:bench:1m"):format(q(cert.cert), q(cert.key))
    cainfo = ca.cert
  end
  local user = ""
  local id = io.popen("id -u"):read("*l")
  if id == "0" then user = "user root;" end
  write_file(dir .. "/nginx.conf", ([[
%s
daemon on;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:%d%s;
    root %s;
    location ~ ^/api/v1/jobs/[^/]+$ {
      default_type application/json;
      add_header X-Request-Id $request_id;
      try_files /job.json =404;
    }
  }
}
]]):format(user, dir, dir, dir, dir, dir, dir, dir, port, listen, dir))
  local nginx = os.getenv("UGEN_NGINX") or "/usr/sbin/nginx"
  assert(os.execute(q(nginx) .. " -p " .. q(dir .. "/") .. " -c " .. q(dir .. "/nginx.conf") .. " -e "
    .. q(dir .. "/logs/error.log") .. " 2>&1"), "nginx did not start")
  -- wait until it accepts
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(0.1)
    if c:connect("127.0.0.1", port) then c:close(); break end
    c:close()
    socket.sleep(0.05)
  end
  local srv = { url = ("%s://127.0.0.1:%d/api/v1"):format(opts.tls and "https" or "http", port), dir = dir,
                cainfo = cainfo }
  function srv.stop()
    local pid = M.read_file(dir .. "/nginx.pid")
    if pid then os.execute("kill -QUIT " .. pid:match("%d+")) end
    socket.sleep(0.2)
    os.execute("rm -rf " .. q(dir))
  end
  return srv
end

-- Resident set size of this process, KiB.
function M.rss_kib()
  local s = M.read_file("/proc/self/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- Interleave `rounds` rounds of each named function (each returns seconds, ops); returns
-- { name = best seconds per op }, { name = median seconds per op }. The best (minimum) round is
-- the estimator the ratios use: other load on the machine only ever adds time, so the
-- minimum is the closest to the intrinsic cost and the most repeatable on a busy box.
function M.compare(rounds, fns, order)
  local times = {}
  for _, name in ipairs(order) do times[name] = {} end
  for _ = 1, rounds do
    for _, name in ipairs(order) do
      collectgarbage("collect")
      local secs, n = fns[name]()
      table.insert(times[name], secs / n)
    end
  end
  local best, med = {}, {}
  for name, list in pairs(times) do
    table.sort(list)
    best[name] = list[1]
    med[name] = list[math.floor((#list + 1) / 2)]
  end
  return best, med
end

function M.report(title, ratio, goal)
  local ok = ratio >= goal
  print(string.format("%-8s %-58s %7.3fx  (goal >= %gx) %s", M.interp(), title, ratio, goal,
    ok and "OK" or "MISSED"))
  return ok
end

function M.capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

return M
