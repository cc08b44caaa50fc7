-- ugen.sandbox.sys: the small shell, file and process helpers of the sandbox
-- manager (ugen.sandbox and its ugen.sandbox.* parts), on Lua 5.1-5.4 and
-- LuaJIT with no C module of its own (luasocket when present, for sleeping and
-- the clock). Internal: not part of the public API.

local M = {}

local type, tostring = type, tostring
local format, concat = string.format, table.concat

--- s as one single-quoted shell word
function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- os.execute(cmd) -> boolean success on every Lua version
function M.run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

--- The whole file -> string | nil
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- -> true | nil, message
function M.write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  return true
end

--- A command's standard output -> string | nil
function M.capture(cmd)
  local p = io.popen(cmd)
  if not p then return nil end
  local s = p:read("*a")
  p:close()
  return s
end

local socket_ok, socket = pcall(require, "socket")
if not socket_ok then socket = nil end
--- luasocket, when installed (else nil)
M.socket = socket

function M.sleep(s)
  if socket then socket.sleep(s) else M.run("sleep " .. format("%.3f", s)) end
end

--- Seconds, for deadlines
function M.monotime()
  if socket then return socket.gettime() end
  return os.time()
end

local uid_cache
--- The user id, as a string of digits
function M.uid()
  if not uid_cache then uid_cache = (M.capture("id -u 2>/dev/null") or ""):match("%d+") or "0" end
  return uid_cache
end

--- Is process pid alive (a zombie is not)?
function M.alive(pid)
  if not pid then return false end
  local stat = M.read_file("/proc/" .. pid .. "/stat")
  if stat then return not stat:match("^%d+ %b() Z") end
  return M.run("kill -0 " .. pid .. " 2>/dev/null")
end

--- Is process pid an nginx (when /proc cannot tell: is it alive)?
function M.is_nginx(pid)
  local cmd = M.read_file("/proc/" .. pid .. "/cmdline")
  if cmd == nil then return M.alive(pid) end
  return cmd:find("nginx", 1, true) ~= nil
end

--- p made absolute against the current directory
function M.abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local cwd = (M.capture("pwd") or ""):gsub("%s+$", "")
  p = p:gsub("^%./", "")
  return cwd .. "/" .. p
end

function M.dirname(p) return (p:match("^(.*)/[^/]*$")) or "." end

--- An absolute path without "." and ".." parts
function M.norm(p)
  local out = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." and #out > 0 and out[#out] ~= ".." then out[#out] = nil
    elseif part ~= "." then out[#out + 1] = part end
  end
  return "/" .. concat(out, "/")
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

return M
