-- ugen.cli.args: command-line flag specs, parsing and help text for `ugen`.
--
-- A flag spec:
--   { name = "segment-count", key = "segment_count", type = "integer",
--     aliases = { "segments" }, short = "o", required = true, min = 1, max = 10,
--     enum = {...} (closed), known = {...} (documented values, not enforced),
--     default = <documented default, shown in help only>, doc = "one line",
--     placeholder = "N", env = "UGEN_X" (fallback, shown in help), hidden = false }
-- Types: string, integer, number, boolean, array (repeatable; JSON array also
-- accepted), object (a JSON object), secret (a string never echoed back).
--
-- Parsing never raises for user input: it returns nil, message (a usage error:
-- the CLI prints one line and exits 2).

local json = require "ugen.json"

local _M = { _VERSION = "0.1.0" }

local type, ipairs, pairs, tostring, tonumber, select = type, ipairs, pairs, tostring, tonumber, select
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge
local tointeger = rawget(math, "tointeger") -- 5.3+ only

local BOOL = {
  ["true"] = true, ["1"] = true, yes = true, on = true,
  ["false"] = false, ["0"] = false, no = false, off = false,
}

local PLACEHOLDER = {
  string = "TEXT", integer = "N", number = "X", boolean = nil, array = "TEXT", object = "JSON",
  secret = "SECRET",
}

--- The value placeholder shown in help ("N", "TEXT", ...), nil for booleans.
function _M.placeholder(spec)
  return spec.placeholder or PLACEHOLDER[spec.type]
end

--- Flag name for a parameter name: "segment_count" -> "segment-count".
function _M.flag_name(param_name)
  return (param_name:gsub("_", "-"))
end

local function levenshtein(a, b)
  local la, lb = #a, #b
  if la == 0 then return lb end
  if lb == 0 then return la end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    local ca = a:byte(i)
    for j = 1, lb do
      local cost = (ca == b:byte(j)) and 0 or 1
      local v = prev[j] + 1
      if cur[j - 1] + 1 < v then v = cur[j - 1] + 1 end
      if prev[j - 1] + cost < v then v = prev[j - 1] + cost end
      cur[j] = v
    end
    prev = cur
  end
  return prev[lb]
end

--- The closest of `candidates` to `word` (for "did you mean"), or nil.
function _M.suggest(word, candidates)
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = levenshtein(word, c)
    if (not best_d or d < best_d) then best, best_d = c, d end
    if c:sub(1, #word) == word and #word >= 3 then best, best_d = c, 0 end
  end
  if best and best_d <= math.max(2, floor(#word / 3)) then return best end
  return nil
end

local function in_list(v, list)
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end

local function fmt_num(n)
  if n == floor(n) and n > -1e15 and n < 1e15 then return string.format("%d", n) end
  return tostring(n)
end

-- Convert one textual value for `spec`. Returns value | nil, message.
local function convert(spec, text, shown)
  local t = spec.type
  if t == "string" or t == "secret" then
    return text
  elseif t == "integer" then
    local s = text:match("^%s*([+-]?%d+)%s*$")
    local n = s and tonumber(s)
    if not n then return nil, shown .. " expects an integer, got '" .. text .. "'" end
    if tointeger then n = tointeger(n) or n end
    return n
  elseif t == "number" then
    local n = tonumber(text)
    if not n or n ~= n or n == huge or n == -huge or text:match("^%s*0[xX]") then
      return nil, shown .. " expects a number, got '" .. text .. "'"
    end
    return n
  elseif t == "boolean" then
    local b = BOOL[text:lower()]
    if b == nil then return nil, shown .. " expects true or false, got '" .. text .. "'" end
    return b
  elseif t == "object" then
    local v = json.decode(text)
    if type(v) ~= "table" or (text:match("^%s*%[")) then
      return nil, shown .. " expects a JSON object such as '{\"key\":\"value\"}', got '" .. text .. "'"
    end
    return v
  elseif t == "array" then
    if text:match("^%s*%[") then
      local v = json.decode(text)
      if type(v) ~= "table" then return nil, shown .. " expects a JSON array or one value per flag" end
      for i = 1, #v do
        if type(v[i]) ~= "string" then
          return nil, shown .. " expects a JSON array of strings, item " .. i .. " is " .. type(v[i])
        end
      end
      return v, true
    end
    return text
  end
  return text
end

-- Range / enum checks after conversion.
local function check_rules(spec, v, shown)
  if spec.enum and not in_list(v, spec.enum) then
    return nil, shown .. " must be one of " .. concat(spec.enum, ", ") .. ", got '" .. tostring(v) .. "'"
  end
  if type(v) == "number" then
    if spec.min and v < spec.min then
      if spec.max then
        return nil, shown .. " must be between " .. fmt_num(spec.min) .. " and " .. fmt_num(spec.max)
          .. ", got " .. fmt_num(v)
      end
      return nil, shown .. " must be at least " .. fmt_num(spec.min) .. ", got " .. fmt_num(v)
    end
    if spec.max and v > spec.max then
      if spec.min then
        return nil, shown .. " must be between " .. fmt_num(spec.min) .. " and " .. fmt_num(spec.max)
          .. ", got " .. fmt_num(v)
      end
      return nil, shown .. " must be at most " .. fmt_num(spec.max) .. ", got " .. fmt_num(v)
    end
  end
  return v
end

--- The lists of flag specs given, one after the other, as one new list.
function _M.join(...)
  local out = {}
  for i = 1, select("#", ...) do
    for _, s in ipairs((select(i, ...))) do out[#out + 1] = s end
  end
  return out
end

--- Index a list of flag specs: name/alias/short -> spec.
function _M.index(specs)
  local by = {}
  for _, s in ipairs(specs) do
    by["--" .. s.name] = s
    for _, a in ipairs(s.aliases or {}) do by["--" .. a] = s end
    if s.short then by["-" .. s.short] = s end
  end
  return by
end

--- Parse argv[first..] against flag specs. Returns
--   values (key -> value), positionals (list), seen (key -> flag text) | nil, message
-- `max_positional` limits positionals (nil: none allowed).
function _M.parse(argv, first, specs, max_positional)
  local by = _M.index(specs)
  local values, positionals, seen = {}, {}, {}
  local i, n = first, #argv
  local only_positional = false
  while i <= n do
    local a = argv[i]
    if only_positional or a == "-" or a:sub(1, 1) ~= "-" or a:match("^%-%d") then
      positionals[#positionals + 1] = a
    elseif a == "--" then
      only_positional = true
    else
      local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
      if not name then name = a end
      local spec, negated = by[name], false
      if not spec and name:sub(1, 5) == "--no-" then
        local s = by["--" .. name:sub(6)]
        if s and s.type == "boolean" then spec, negated = s, true end
      end
      if not spec then
        local names = {}
        for k in pairs(by) do
          if k:sub(1, 2) == "--" and not by[k].hidden then names[#names + 1] = k end
        end
        sort(names)
        local hint = _M.suggest(name, names)
        return nil, "unknown flag " .. name .. (hint and (" (did you mean " .. hint .. "?)") or "")
      end
      local shown = name
      local v
      if spec.type == "boolean" then
        if negated then
          if inline then return nil, name .. " takes no value" end
          v = false
        elseif inline then
          local err
          v, err = convert(spec, inline, shown)
          if v == nil then return nil, err end
        else
          local nxt = argv[i + 1]
          if nxt and BOOL[nxt:lower()] ~= nil and (nxt:lower() == "true" or nxt:lower() == "false") then
            v = BOOL[nxt:lower()]
            i = i + 1
          else
            v = true
          end
        end
      else
        local text = inline
        if not text then
          text = argv[i + 1]
          if text == nil or (text:sub(1, 2) == "--" and #text > 2) then
            return nil, shown .. " needs a value (" .. (spec.placeholder or PLACEHOLDER[spec.type] or "VALUE") .. ")"
          end
          i = i + 1
        end
        local err, whole
        v, err = convert(spec, text, shown)
        if v == nil then return nil, err end
        whole = err
        if spec.type == "array" then
          local list = values[spec.key] or {}
          if whole then
            for _, x in ipairs(v) do list[#list + 1] = x end
          else
            list[#list + 1] = v
          end
          v = list
        elseif seen[spec.key] and not spec.repeatable then
          return nil, shown .. " given twice"
        end
      end
      if spec.type ~= "array" then
        local ok, err = check_rules(spec, v, shown)
        if ok == nil then return nil, err end
      end
      values[spec.key] = v
      seen[spec.key] = shown
    end
    i = i + 1
  end
  if #positionals > (max_positional or 0) then
    local extra = positionals[(max_positional or 0) + 1]
    return nil, "unexpected argument '" .. extra .. "'"
  end
  return values, positionals, seen
end

--- Fill values from env fallbacks; then check required flags. Returns true | nil, message.
function _M.finish(values, specs)
  for _, s in ipairs(specs) do
    if values[s.key] == nil and s.env then
      local e = os.getenv(s.env)
      if e and e ~= "" then
        local v, err = convert(s, e, s.env)
        if v == nil then return nil, err end
        local ok, err2 = check_rules(s, v, s.env)
        if ok == nil then return nil, err2 end
        values[s.key] = v
      end
    end
  end
  for _, s in ipairs(specs) do
    if s.required and values[s.key] == nil then
      local alias = s.aliases and s.aliases[1]
      return nil, "missing --" .. s.name .. (alias and (" (or --" .. alias .. ")") or "")
        .. (s.env and (" (or env " .. s.env .. ")") or "")
    end
  end
  return true
end

-- Help text for one flag: left column and description.
local function describe(s)
  local left = "--" .. s.name
  local ph = s.placeholder or PLACEHOLDER[s.type]
  if s.type ~= "boolean" and ph then
    left = left .. " " .. ph
  end
  if s.short then left = "-" .. s.short .. ", " .. left end
  local parts = {}
  if s.doc then parts[#parts + 1] = s.doc end
  local facts = {}
  if s.required then facts[#facts + 1] = "required" end
  local ty = s.type == "secret" and "string" or s.type
  if s.type == "array" then ty = "list of strings, repeat the flag or give a JSON array" end
  if s.type == "object" then ty = "JSON object" end
  if not s.no_type then facts[#facts + 1] = ty end
  if s.min and s.max then
    facts[#facts + 1] = fmt_num(s.min) .. ".." .. fmt_num(s.max)
  elseif s.min then
    facts[#facts + 1] = ">= " .. fmt_num(s.min)
  elseif s.max then
    facts[#facts + 1] = "<= " .. fmt_num(s.max)
  end
  if s.enum then facts[#facts + 1] = "one of " .. concat(s.enum, ", ") end
  if s.known then facts[#facts + 1] = "known: " .. concat(s.known, ", ") end
  if s.default ~= nil then facts[#facts + 1] = "API default " .. tostring(s.default) end
  if s.cli_default ~= nil then facts[#facts + 1] = "default " .. tostring(s.cli_default) end
  if s.env then facts[#facts + 1] = "env " .. s.env end
  if s.aliases and #s.aliases > 0 then
    local al = {}
    for i, a in ipairs(s.aliases) do al[i] = "--" .. a end
    facts[#facts + 1] = "alias " .. concat(al, ", ")
  end
  if #facts > 0 then parts[#parts + 1] = "(" .. concat(facts, "; ") .. ")" end
  return left, concat(parts, " ")
end

--- Help lines for a list of flag specs, aligned, wrapped at `width`.
function _M.help_lines(specs, width)
  width = width or 100
  local rows, w = {}, 0
  for _, s in ipairs(specs) do
    if not s.hidden then
      local l, d = describe(s)
      rows[#rows + 1] = { l, d }
      if #l > w then w = #l end
    end
  end
  if w > 38 then w = 38 end
  local out = {}
  for _, r in ipairs(rows) do
    local l, d = r[1], r[2]
    local indent = 2 + w + 2
    local first
    if #l > w then
      out[#out + 1] = "  " .. l
      first = string.rep(" ", indent)
    else
      first = "  " .. l .. string.rep(" ", w - #l + 2)
    end
    -- word wrap d
    local line, lines = first, {}
    local empty = true
    for word in d:gmatch("%S+") do
      if not empty and #line + 1 + #word > width then
        lines[#lines + 1] = line
        line = string.rep(" ", indent) .. word
      else
        line = line .. (empty and "" or " ") .. word
      end
      empty = false
    end
    lines[#lines + 1] = line
    for _, x in ipairs(lines) do out[#out + 1] = x end
  end
  return out
end

return _M
