-- ugen.url: the one place the SDK parses, compares, resolves and builds URLs.
-- Near a leaf: of the ugen modules it requires only ugen.args (argument errors).
--
--   url.parse(s) -> u | nil, message
--     Absolute http:// and https:// URLs only. u = {
--       scheme    "http" | "https" (lowercase)
--       userinfo  the raw "user:password" before '@', or nil
--       host      lowercase name ("api.u-gen.ai", "127.0.0.1") or IPv6 literal
--                 in brackets ("[::1]"); a trailing dot is kept ("a.com.")
--       port      number: the explicit port, else 80 (http) / 443 (https)
--       authority host, plus ":port" when it is not the scheme's default: what
--                 goes in a Host header (never the userinfo)
--       path      "/..." (at least "/"), as written (no dot segment removed)
--       query     the text after '?', or nil
--       target    path .. "?" .. query: an HTTP/1.1 request target
--     } (a fragment is dropped). Refused, with a message that never repeats
--     the URL (it may hold a password or a signed query):
--       - a space or a control character (CR, LF, NUL, DEL, ...) anywhere;
--       - a scheme other than http/https, or no "scheme://";
--       - more than one '@' in the authority, or a backslash in it (URL
--         parsers disagree on where such hosts end);
--       - a host that is empty, not ASCII letters/digits/'-'/'.'/'_', has an
--         empty label ("a..b", ".a"), or is percent-encoded ("%61.com");
--       - an IPv6 literal that is not one (zone ids "%25eth0" included);
--       - a port that is not 1..65535 (an empty port, "http://a:/", is the default).
--
--   url.origin(s) -> "scheme://host:port" | nil, message
--     The origin used to decide whether a URL is the API's own (credentials
--     and user headers go only there): scheme and host lowercase, port always
--     written, userinfo, path, query and fragment dropped. So "http://A.COM",
--     "http://a.com:80/x" and "http://user@a.com:0080" are one origin;
--     "https://a.com" (443) and "http://a.com" (80) are two; "a.com." and
--     "a.com" are two; "[::1]" and "[0::1]" are two (no IPv6 canonical form:
--     a URL written differently is never taken for the API's origin).
--   url.same_origin(a, b) -> boolean: both parse and have the same origin.
--
--   url.resolve(base, ref) -> url, u | nil, message
--     A redirect's Location resolved against the URL that answered (RFC 3986
--     section 5.2, dot segments removed), then checked with url.parse (u is its
--     result). The fragment is dropped; a relative ref keeps base's userinfo.
--
--   url.remove_dot_segments(path) -> path (RFC 3986 5.2.4)
--   url.redact(s) -> s for a message: any userinfo (everything up to the last
--     '@' before a '?' or '#') shown as "<redacted>@", and anything from a '?'
--     or '#' on as "?<redacted>" (a query may hold a token or a signature)
--
-- Building URLs (the SDK's path parameters and queries):
--   url.encode_component(s)  percent-encodes every byte but A-Z a-z 0-9 - . _ ~
--                            (a query name or value)
--   url.encode_segment(s)    the same for one path segment ('/' is %2F)
--   url.dot_segment(v)       true when the string v would be resolved as a dot
--                            segment by a server or libcurl: "." or "..", alone
--                            or between '/' or a backslash ("../x", "a/./b").
--                            Such a value must be refused, not encoded: "%2E%2E"
--                            and "%2F" are decoded by servers such as nginx
--                            before they resolve dot segments.
--   url.scalar_string(v)     a number (integers without exponent or ".0"),
--                            boolean or string as text
--   url.build_query(q[, skip]) {k = v} -> "?a=1&b=x" or "": keys sorted, a list
--                            value repeats its key, nil and `skip` (the caller's
--                            null sentinel) are left out

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local string_format, string_match, string_lower, string_find, string_gsub, string_sub, string_gmatch =
  string.format, string.match, string.lower, string.find, string.gsub, string.sub, string.gmatch
local concat, sort, math_floor = table.concat, table.sort, math.floor

local args = require "ugen.args"
local argerror = args.argerror

local _M = { _VERSION = "0.1.0" }

local DEFAULT_PORT = { http = 80, https = 443 }
_M.DEFAULT_PORT = DEFAULT_PORT

local function check_string(v, n, fname)
  if type(v) ~= "string" then argerror(n, fname, "string expected, got " .. type(v), 3) end
end

-- "1.2.3.4" with every part 0..255
local function valid_ipv4(s)
  local a, b, c, d = string_match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if #x > 3 or tonumber(x) > 255 then return false end
  end
  return true
end

-- number of 16-bit groups in "1:ab:0" (each 1..4 hex digits), or nil
local function ipv6_groups(s)
  if s == "" then return 0 end
  local n = 0
  for g in string_gmatch(s .. ":", "([^:]*):") do
    if not string_match(g, "^%x%x?%x?%x?$") then return nil end
    n = n + 1
  end
  return n
end

-- RFC 4291 2.2 text forms: eight groups, "::" for one or more zero groups
-- (once), an IPv4 dotted quad as the last two groups.
local function valid_ipv6(s)
  if #s < 2 or #s > 45 or string_find(s, "[^%x:.]") then return false end
  local extra = 0
  local v4 = string_match(s, "[^:]*%.[^:]*$")
  if v4 then
    if not valid_ipv4(v4) then return false end
    s = string_sub(s, 1, #s - #v4)
    if string_sub(s, -2) ~= "::" then
      if string_sub(s, -1) ~= ":" then return false end
      s = string_sub(s, 1, -2)
    end
    extra = 2
  end
  local head, tail = string_match(s, "^(.-)::(.*)$")
  if head then
    if string_find(tail, "::", 1, true) then return false end
    local h, t = ipv6_groups(head), ipv6_groups(tail)
    return h ~= nil and t ~= nil and h + t + extra <= 7
  end
  local n = ipv6_groups(s)
  return n ~= nil and n + extra == 8
end

-- every '%' starts a %XX escape
local function valid_escapes(s)
  return not string_find((string_gsub(s, "%%%x%x", "")), "%", 1, true)
end

function _M.parse(s)
  check_string(s, 1, "parse")
  if string_find(s, "[%z\1-\32\127]") then
    return nil, "URL contains a space or a control character"
  end
  local scheme, rest = string_match(s, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "URL is not absolute (no scheme://)" end
  scheme = string_lower(scheme)
  if not DEFAULT_PORT[scheme] then
    return nil, "unsupported URL scheme '" .. scheme .. "' (http and https only)"
  end
  local authority, tail = string_match(rest, "^([^/?#]*)(.*)$")
  if string_find(authority, "\\", 1, true) then return nil, "URL has a backslash in its authority" end

  local userinfo, hostport = nil, authority
  local at = string_find(authority, "@", 1, true)
  if at then
    if string_find(authority, "@", at + 1, true) then return nil, "URL has more than one '@' in its authority" end
    userinfo, hostport = string_sub(authority, 1, at - 1), string_sub(authority, at + 1)
    if string_find(userinfo, "[^%w%-._~!$&'()*+,;=:%%]") or not valid_escapes(userinfo) then
      return nil, "URL has invalid characters in its userinfo"
    end
  end

  local host, after
  if string_sub(hostport, 1, 1) == "[" then
    local ip6
    ip6, after = string_match(hostport, "^%[([^%]]*)%](.*)$")
    if not ip6 or not valid_ipv6(ip6) then return nil, "URL has an invalid IPv6 address" end
    host = "[" .. string_lower(ip6) .. "]"
  else
    host, after = string_match(hostport, "^([^:]*)(.*)$")
    if host == "" then return nil, "URL has no host" end
    if string_find(host, "%", 1, true) then return nil, "URL has a percent-encoded host" end
    if string_find(host, "[^%-.0-9A-Z_a-z]") then return nil, "URL has invalid characters in its host" end
    if string_sub(host, 1, 1) == "." or string_find(host, "..", 1, true) then
      return nil, "URL has an empty label in its host"
    end
    host = string_lower(host)
  end

  local port = DEFAULT_PORT[scheme]
  if after ~= "" then
    local digits = string_match(after, "^:(%d*)$")
    if not digits then return nil, "URL has an invalid port" end
    if digits ~= "" then
      port = tonumber(digits)
      if port < 1 or port > 65535 then return nil, "URL has an invalid port" end
    end
  end

  tail = string_gsub(tail, "#.*$", "")
  local path, query = string_match(tail, "^([^?]*)%??(.*)$")
  if not string_find(tail, "?", 1, true) then query = nil end
  if path == "" then path = "/" end
  return {
    scheme = scheme, userinfo = userinfo, host = host, port = port,
    authority = port == DEFAULT_PORT[scheme] and host or (host .. ":" .. port),
    path = path, query = query, target = query and (path .. "?" .. query) or path,
  }
end
local parse = _M.parse

function _M.origin(s)
  check_string(s, 1, "origin")
  local u, err = parse(s)
  if not u then return nil, err end
  return u.scheme .. "://" .. u.host .. ":" .. u.port
end
local origin = _M.origin

function _M.same_origin(a, b)
  check_string(a, 1, "same_origin")
  check_string(b, 2, "same_origin")
  local oa = origin(a)
  return oa ~= nil and oa == origin(b)
end

function _M.remove_dot_segments(path)
  check_string(path, 1, "remove_dot_segments")
  if not string_find(path, ".", 1, true) then return path end
  local absolute = string_sub(path, 1, 1) == "/"
  local segs = {}
  for seg in string_gmatch((absolute and string_sub(path, 2) or path) .. "/", "([^/]*)/") do
    segs[#segs + 1] = seg
  end
  local out, n, last = {}, 0, #segs
  for i, seg in ipairs(segs) do
    if seg == "." or seg == ".." then
      if seg == ".." and n > 0 then out[n] = nil; n = n - 1 end
      if i == last then n = n + 1; out[n] = "" end     -- "/a/." -> "/a/"
    else
      n = n + 1; out[n] = seg
    end
  end
  return (absolute and "/" or "") .. concat(out, "/")
end
local remove_dot_segments = _M.remove_dot_segments

-- u (from parse) back to text, with its path's dot segments removed
local function unparse(u, path, query)
  return u.scheme .. "://" .. (u.userinfo and (u.userinfo .. "@") or "") .. u.authority ..
    remove_dot_segments(path) .. (query and ("?" .. query) or "")
end

function _M.resolve(base, ref)
  check_string(base, 1, "resolve")
  check_string(ref, 2, "resolve")
  local b, berr = parse(base)
  if not b then return nil, "base " .. berr end
  if string_find(ref, "[%z\1-\32\127]") then
    return nil, "location contains a space or a control character"
  end
  ref = string_gsub(ref, "#.*$", "")
  local out
  if string_match(ref, "^%a[%w+.-]*:") or string_sub(ref, 1, 2) == "//" then
    -- absolute, or network-path ("//host/p": base's scheme)
    local abs = string_sub(ref, 1, 2) == "//" and (b.scheme .. ":" .. ref) or ref
    local r, rerr = parse(abs)
    if not r then return nil, rerr end
    out = unparse(r, r.path, r.query)
  else
    local rpath, rquery = string_match(ref, "^([^?]*)%??(.*)$")
    if not string_find(ref, "?", 1, true) then rquery = nil end
    if rpath == "" then
      out = unparse(b, b.path, rquery or b.query)
    elseif string_sub(rpath, 1, 1) == "/" then
      out = unparse(b, rpath, rquery)
    else
      out = unparse(b, (string_match(b.path, "^(.*/)") or "/") .. rpath, rquery)
    end
  end
  local u, err = parse(out)
  if not u then return nil, err end
  return out, u
end

function _M.redact(s)
  check_string(s, 1, "redact")
  local out, n = string_gsub(s, "^(%a[%w+.-]*://)[^?#]*@", "%1<redacted>@")
  if n == 0 then out = string_gsub(s, "^[^?#]*@", "<redacted>@") end
  return (string_gsub(out, "[?#].*$", "?<redacted>"))
end

---------------------------------------------------------------------------
-- building

-- RFC 3986: every byte but ALPHA DIGIT - . _ ~ as %XX (csrc/ugen_url.c; an
-- id with nothing to encode comes back as the same string)
local encode_component = require("ugen.native").url_encode

function _M.encode_component(s)
  check_string(s, 1, "encode_component")
  return encode_component(s)
end

function _M.encode_segment(s)
  check_string(s, 1, "encode_segment")
  return encode_component(s)
end

-- true when v, placed in a path, has a "." or ".." segment ("/" or "\\" bound
-- segments). Ids have no dot: one plain search settles the common case.
function _M.dot_segment(v)
  if type(v) ~= "string" or not string_find(v, ".", 1, true) then return false end
  return string_find("/" .. v .. "/", "[/\\]%.%.?[/\\]") ~= nil
end

local function scalar_string(v)
  if type(v) == "number" then
    if v == math_floor(v) and v > -2^53 and v < 2^53 then return string_format("%d", v) end
    return string_format("%.17g", v)
  end
  if type(v) == "boolean" then return v and "true" or "false" end
  return tostring(v)
end
_M.scalar_string = scalar_string

function _M.build_query(q, skip)
  if q == nil then return "" end
  args.check_table(q, 1, "build_query", 2)
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  if #keys == 0 then return "" end
  sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do
        if x ~= skip then parts[#parts + 1] = encode_component(k) .. "=" .. encode_component(scalar_string(x)) end
      end
    elseif v ~= nil and v ~= skip then
      parts[#parts + 1] = encode_component(k) .. "=" .. encode_component(scalar_string(v))
    end
  end
  if #parts == 0 then return "" end
  return "?" .. concat(parts, "&")
end

return _M
