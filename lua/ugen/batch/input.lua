-- ugen.batch.input: a product catalogue (CSV or JSON Lines) to jobs:create
-- parameters, one entry per row, each valid or invalid (with its field).
--
--   input.parse_csv(text) -> records, lines | nil, err
--       RFC 4180: fields separated by ",", records by CRLF or LF; a field in
--       double quotes may hold commas, line breaks and "" (one quote); a UTF-8
--       BOM is skipped; a last line break is optional; spaces are kept. A quote
--       inside an unquoted field, text after a closing quote or an
--       unterminated quoted field is an error naming the line. Blank lines are
--       skipped. records[i] = { field, ... }, lines[i] = the line it starts on.
--   input.read{ path = | text =, format = "csv" | "jsonl", columns =, defaults =,
--               ignore =, base_dir = }
--     -> rows | nil, err
--       rows[i] = { row = i (data rows from 1; a CSV header is not a row),
--                   line = the line of the file it starts on,
--                   params = jobs:create parameters (nil when invalid),
--                   image_path = a local file to upload for product_image_url,
--                   source = the row's canonical JSON (mapped, typed, defaulted),
--                   invalid = { field =, message = } | nil }
--       A CSV header naming a column that is neither a jobs:create field, a
--       mapped column (columns = { sku_title = "product_name" }) nor ignored
--       (ignore = { "sku" }) is an error for the whole input (err.field), with
--       a suggestion: a typo must not silently drop a field from 200 jobs.
--   input.rows{ rows = { {...}, ... }, columns =, defaults =, ignore = } -> rows
--       the same from Lua tables (ugen.batch.run{ rows = ... }).
--   input.cell(field, text) -> value | nil, message   a text typed for a field
--   input.csv_field(v), input.write_csv(path, columns, rows)   CSV output (RFC 4180)
--
-- Cells are typed by the endpoint table (ugen.endpoints): integer, number,
-- boolean (true/false, 1/0, yes/no, on/off), array (a JSON array, or items
-- separated by "|"), object (JSON). An empty cell is an absent field (its
-- default applies). Rows are then checked by ugen.validate, the SDK's own
-- validation of jobs:create (unknown fields are errors), before anything is
-- sent. A product_image_url without a scheme is a local file (relative to
-- base_dir, the input's directory), uploaded when the row is run; a missing
-- or unreadable file makes the row invalid.

local json = require "ugen.json"
local endpoints = require "ugen.endpoints"
local validate = require "ugen.validate"
local errors = require "ugen.errors"

local type, pairs, ipairs, tostring, tonumber, pcall, error = type, pairs, ipairs, tostring, tonumber, pcall, error
local concat, sort = table.concat, table.sort
local string_format, string_sub, string_find, string_byte = string.format, string.sub, string.find, string.byte
local floor, huge = math.floor, math.huge
local tointeger = rawget(math, "tointeger") -- 5.3+

local _M = { _VERSION = "0.1.0" }

local EP = endpoints.by_name["jobs.create"]
local PARAM = {}
for _, p in ipairs(EP.params) do PARAM[p.name] = p end
_M.FIELDS = PARAM

local function fail(message, field, line)
  return nil, errors.new{ kind = "validation", message = message, field = field, line = line, retryable = false }
end

---------------------------------------------------------------------------
-- CSV (RFC 4180)

function _M.parse_csv(text)
  if type(text) ~= "string" then error("parse_csv: string expected", 2) end
  local pos, n = 1, #text
  if string_sub(text, 1, 3) == "\239\187\191" then pos = 4 end
  local records, lines = {}, {}
  local line = 1
  while pos <= n do
    local rec, start_line = {}, line
    local blank = true
    while true do
      local c = string_byte(text, pos)
      local field
      if c == 34 then -- '"'
        blank = false
        local parts = {}
        local i = pos + 1
        while true do
          local q = string_find(text, '"', i, true)
          if not q then
            return fail(string_format("line %d: unterminated quoted field", start_line), nil, start_line)
          end
          local chunk = string_sub(text, i, q - 1)
          local _, nl = chunk:gsub("\n", "")
          line = line + nl
          parts[#parts + 1] = chunk
          if string_byte(text, q + 1) == 34 then
            parts[#parts + 1] = '"'
            i = q + 2
          else
            pos = q + 1
            break
          end
        end
        field = concat(parts)
        local d = string_byte(text, pos)
        if d ~= nil and d ~= 44 and d ~= 10 and not (d == 13 and string_byte(text, pos + 1) == 10) then
          return fail(string_format("line %d: text after a closing quote", line), nil, line)
        end
      else
        local e = string_find(text, "[,\r\n]", pos)
        while e and string_byte(text, e) == 13 and string_byte(text, e + 1) ~= 10 do
          e = string_find(text, "[,\r\n]", e + 1)  -- a lone CR is data
        end
        local stop = e and e - 1 or n
        field = string_sub(text, pos, stop)
        if string_find(field, '"', 1, true) then
          return fail(string_format("line %d: a quote inside an unquoted field (quote the whole field)", line),
            nil, line)
        end
        if field ~= "" then blank = false end
        pos = stop + 1
      end
      rec[#rec + 1] = field
      local d = string_byte(text, pos)
      if d == 44 then
        pos = pos + 1
        blank = false
      else
        if d == 13 then pos = pos + 2 elseif d == 10 then pos = pos + 1 end
        if d ~= nil then line = line + 1 end
        break
      end
    end
    if not blank then
      records[#records + 1] = rec
      lines[#lines + 1] = start_line
    end
  end
  return records, lines
end

---------------------------------------------------------------------------
-- typing cells

local BOOL = { ["true"] = true, ["1"] = true, yes = true, on = true,
               ["false"] = false, ["0"] = false, no = false, off = false }

-- a CSV cell to the field's declared type -> value | nil, message
local function typed(p, s)
  local t = p and p.type or "string"
  if t == "string" then return s end
  if t == "integer" or t == "number" then
    local v = tonumber(s)
    if v == nil or v ~= v or v == huge or v == -huge then return nil, "a number expected, got '" .. s .. "'" end
    if t == "integer" then
      if v ~= floor(v) then return nil, "an integer expected, got '" .. s .. "'" end
      v = (tointeger and tointeger(v)) or v
    end
    return v
  end
  if t == "boolean" then
    local b = BOOL[s:lower()]
    if b == nil then return nil, "true or false expected, got '" .. s .. "'" end
    return b
  end
  if t == "array" then
    if string_sub(s, 1, 1) == "[" then
      local ok, v = pcall(json.decode, s)
      if not ok or type(v) ~= "table" then return nil, "a JSON array expected" end
      return v
    end
    local items = {}
    for item in (s .. "|"):gmatch("(.-)|") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then items[#items + 1] = item end
    end
    return json.array(items)
  end
  if t == "object" then
    local ok, v = pcall(json.decode, s)
    if not ok or type(v) ~= "table" then return nil, "a JSON object expected" end
    return v
  end
  return s
end

--- A text value (a CSV cell, a --set value) typed for jobs:create field `field`
-- -> value | nil, message
function _M.cell(field, s)
  return typed(PARAM[field], s)
end

---------------------------------------------------------------------------
-- one row: map, type, default, validate

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

local function is_local_path(v)
  return type(v) == "string" and v ~= "" and not v:match("^%a[%w+.-]*://")
end

local function file_readable(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok = f:read(1) ~= nil
  f:close()
  return ok
end

-- The JSON of v with object keys sorted (a stable text for a digest).
local function canonical(v)
  if type(v) == "table" then
    if v == json.null then return "null" end
    local n, count = #v, 0
    for _ in pairs(v) do count = count + 1 end
    if json.is_array(v) or (n > 0 and count == n) then
      local parts = {}
      for i = 1, n do parts[i] = canonical(v[i]) end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = json.encode(k) .. ":" .. canonical(v[k]) end
    return "{" .. concat(parts, ",") .. "}"
  end
  return json.encode(v)
end
_M.canonical = canonical

-- fields (name -> raw value; raw_strings: from a CSV cell) -> row entry
local function build(i, line, fields, raw_strings, o)
  local params, invalid = {}, nil
  for name, v in pairs(fields) do
    local field = o.columns[name]
    if field == nil then field = name end
    if field ~= false and not o.ignore[name] then
      if raw_strings then
        if v ~= "" then
          local tv, msg = typed(PARAM[field], v)
          if tv == nil then
            invalid = invalid or { field = field, message = msg }
          else
            params[field] = tv
          end
        end
      elseif v ~= json.null then
        params[field] = v
      end
    end
  end
  for k, v in pairs(o.defaults) do
    if params[k] == nil then params[k] = v end
  end
  local row = { row = i, line = line }
  if not invalid then
    local details = validate.check(EP, params, { unknown = "error", null = json.null, is_array = json.is_array })
    if details then
      local d = details[1]
      local loc = d.loc or {}
      invalid = { field = tostring(loc[2] or "?"), message = validate.summary({ d }) }
    end
  end
  if not invalid and params.idempotency_key ~= nil then
    invalid = { field = "idempotency_key", message = "set by the batch (derived from the batch and the row)" }
  end
  if not invalid and is_local_path(params.product_image_url) then
    local path = params.product_image_url
    if string_sub(path, 1, 1) ~= "/" and o.base_dir then path = o.base_dir .. "/" .. path end
    if not file_readable(path) then
      invalid = { field = "product_image_url", message = "local image '" .. params.product_image_url
        .. "' cannot be read" }
    else
      row.image_path = path
    end
  end
  row.source = canonical(params)
  if invalid then
    row.invalid = invalid
  else
    row.params = params
  end
  return row
end

local function options(o)
  local columns = {}
  for k, v in pairs(o.columns or {}) do
    if v == "" then v = false end
    columns[k] = v
  end
  return {
    columns = columns, defaults = o.defaults or {}, ignore = set_of(o.ignore), base_dir = o.base_dir,
  }
end

-- A header column the batch cannot place -> nil, err
local function check_header(header, o)
  local seen = {}
  for idx, name in ipairs(header) do
    if name == "" then return fail(string_format("column %d has no name in the header", idx), nil, 1) end
    if seen[name] then return fail("column '" .. name .. "' appears twice in the header", name, 1) end
    seen[name] = true
    local field = o.columns[name]
    if field == nil then field = name end
    if field ~= false and not o.ignore[name] and not PARAM[field] then
      local hint = validate.suggest(EP, field)
      return fail(string_format("column '%s' is not a jobs:create field%s (map it with columns/--map %s=FIELD"
        .. " or skip it with ignore/--ignore %s)", name, hint and (" (did you mean '" .. hint .. "'?)") or "",
        name, name), name, 1)
    end
  end
  return true
end

function _M.from_csv(text, o)
  o = options(o)
  local records, lines = _M.parse_csv(text)
  if not records then return nil, lines end
  local header = records[1]
  if not header then return fail("the CSV has no header line") end
  for k, name in ipairs(header) do header[k] = name:match("^%s*(.-)%s*$") end
  local ok, err = check_header(header, o)
  if not ok then return nil, err end
  local rows = {}
  for r = 2, #records do
    local rec, fields = records[r], {}
    local i = r - 1
    if #rec ~= #header then
      rows[i] = { row = i, line = lines[r], source = canonical(rec),
        invalid = { field = "?", message = string_format("%d fields where the header has %d", #rec, #header) } }
    else
      for k, name in ipairs(header) do fields[name] = rec[k] end
      rows[i] = build(i, lines[r], fields, true, o)
    end
  end
  return rows
end

function _M.from_jsonl(text, o)
  o = options(o)
  local rows, line = {}, 0
  if string_sub(text, 1, 3) == "\239\187\191" then text = string_sub(text, 4) end
  for l in (text .. "\n"):gmatch("(.-)\r?\n") do
    line = line + 1
    if l:find("%S") then
      local i = #rows + 1
      local ok, v = pcall(json.decode, l)
      if not ok or type(v) ~= "table" or json.is_array(v) or (v[1] ~= nil) then
        rows[i] = { row = i, line = line, source = l,
          invalid = { field = "?", message = "not a JSON object" } }
      else
        rows[i] = build(i, line, v, false, o)
      end
    end
  end
  return rows
end

function _M.rows(o)
  local list = o.rows
  local opt = options(o)
  local rows = {}
  for i, v in ipairs(list) do
    if type(v) ~= "table" then
      rows[i] = { row = i, line = i, source = tostring(v), invalid = { field = "?", message = "not a table" } }
    else
      rows[i] = build(i, i, v, false, opt)
    end
  end
  return rows
end

--- One CSV field (RFC 4180: quoted when it holds a comma, quote, CR or LF).
function _M.csv_field(v)
  if v == nil or v == json.null then return "" end
  v = tostring(v)
  if string_find(v, '[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

--- Write a CSV file: a header of `columns`, then one line per entry of `rows`
-- (tables keyed by column). -> true | nil, err (kind "io")
function _M.write_csv(path, columns, rows)
  local f, ferr = io.open(path, "wb")
  if not f then return nil, errors.new{ kind = "io", message = "cannot write " .. tostring(ferr), path = path } end
  local head = {}
  for i, c in ipairs(columns) do head[i] = _M.csv_field(c) end
  f:write(concat(head, ","), "\r\n")
  for _, r in ipairs(rows) do
    local line = {}
    for i, c in ipairs(columns) do line[i] = _M.csv_field(r[c]) end
    f:write(concat(line, ","), "\r\n")
  end
  local ok, cerr = f:close()
  if not ok then return nil, errors.new{ kind = "io", message = "cannot write " .. tostring(cerr), path = path } end
  return true
end

function _M.format_of(path)
  local ext = tostring(path):lower():match("%.(%w+)$")
  if ext == "jsonl" or ext == "ndjson" or ext == "json" then return "jsonl" end
  return "csv"
end

function _M.read(o)
  local text = o.text
  if text == nil then
    local f, ferr = io.open(o.path, "rb")
    if not f then return nil, errors.new{ kind = "io", message = "cannot read " .. tostring(ferr) } end
    text = f:read("*a")
    f:close()
  end
  local format = o.format or _M.format_of(o.path or "")
  if format == "jsonl" then return _M.from_jsonl(text, o) end
  if format == "csv" then return _M.from_csv(text, o) end
  return fail("format must be csv or jsonl (got " .. tostring(format) .. ")", "format")
end

return _M
