-- ugen.runtime.timer_heap: a binary min-heap of timer entries, ordered by
-- entry.at, then entry.seq (equal deadlines pop in FIFO order). Pure Lua, no
-- other module: the curl scheduler (ugen.runtime.loop) keeps its sleeps,
-- join_any timeouts and queued-request deadlines in one.
--
--   local heap = require "ugen.runtime.timer_heap"
--   local h = heap.new()           -- { n = 0, seq = 0 }
--   heap.add(h, e, at)             -- e.at = at, e.seq = the next sequence number; push
--   heap.push(h, e)                -- push e (e.at and e.seq set by the caller)
--   heap.pop(h)                    -- -> the least entry (removed) | nil when empty
--   h[1]                           -- the least entry (not removed), nil when empty
--
-- The heap does not know what an entry means: a caller that gives up on a
-- timer marks the entry itself and skips it when it reaches the top.

local math_floor = math.floor

local _M = {}

local function less(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

function _M.new()
  return { n = 0, seq = 0 }
end

local function push(h, e)
  local n = h.n + 1
  h.n = n
  while n > 1 do
    local p = math_floor(n / 2)
    local pe = h[p]
    if not less(e, pe) then break end
    h[n] = pe
    n = p
  end
  h[n] = e
end
_M.push = push

function _M.add(h, e, at)
  local seq = (h.seq or 0) + 1
  h.seq = seq
  e.at, e.seq = at, seq
  push(h, e)
  return e
end

function _M.pop(h)
  local n = h.n
  if n == 0 then return nil end
  local top, last = h[1], h[n]
  h[n] = nil
  n = n - 1
  h.n = n
  if n > 0 then
    local i = 1
    while true do
      local l = i * 2
      if l > n then break end
      local c = l
      if l + 1 <= n and less(h[l + 1], h[l]) then c = l + 1 end
      if less(h[c], last) then
        h[i] = h[c]
        i = c
      else
        break
      end
    end
    h[i] = last
  end
  return top
end

return _M
