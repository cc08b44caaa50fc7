-- ugen.url: the one URL parser of the SDK. origin() decides where credentials
-- and user headers may go, so its equivalences (and non-equivalences) are
-- pinned here case by case.
local url = require "ugen.url"

local function refused(s, pattern)
  local u, err = url.parse(s)
  assert.is_nil(u, s)
  assert.is_string(err, s)
  if pattern then assert.truthy(err:find(pattern, 1, true), s .. " -> " .. err) end
  return err
end

describe("ugen.url", function()
  it("is nearly a leaf: it requires ugen.args (argument errors) and ugen.native (percent-encoding)", function()
    local seen = {}
    local env = setmetatable({ require = function(name) seen[#seen + 1] = name; return require(name) end },
      { __index = _G })
    local chunk
    if setfenv then
      chunk = assert(loadfile("lua/ugen/url.lua")); setfenv(chunk, env)
    else
      chunk = assert(loadfile("lua/ugen/url.lua", "t", env))
    end
    local m = chunk()
    assert.same({ "ugen.args", "ugen.native" }, seen)
    assert.is_function(m.parse)
  end)

  describe("parse", function()
    it("splits an absolute URL and fills the default port", function()
      assert.same({ scheme = "https", host = "api.u-gen.ai", port = 443, authority = "api.u-gen.ai",
                    path = "/api/v1/jobs", query = "a=1&b=2", target = "/api/v1/jobs?a=1&b=2" },
        url.parse("https://api.u-gen.ai/api/v1/jobs?a=1&b=2#frag"))
      local u = url.parse("http://127.0.0.1:8080")
      assert.equal(8080, u.port); assert.equal("127.0.0.1:8080", u.authority)
      assert.equal("/", u.path); assert.equal("/", u.target); assert.is_nil(u.query)
      assert.equal("/?x", url.parse("http://h?x").target)
      assert.equal("/?", url.parse("http://h/?").target)
      assert.equal("/", url.parse("http://h#only-a-fragment").target)
    end)

    it("lowercases scheme and host, not the path or query", function()
      local u = url.parse("HtTpS://API.U-Gen.AI/Jobs/ABC?Q=X")
      assert.equal("https", u.scheme); assert.equal("api.u-gen.ai", u.host)
      assert.equal("/Jobs/ABC?Q=X", u.target)
    end)

    it("keeps the userinfo apart (never in host or authority)", function()
      local u = url.parse("https://user:p%40ss@Host.example:8443/p")
      assert.equal("user:p%40ss", u.userinfo)
      assert.equal("host.example", u.host); assert.equal(8443, u.port)
      assert.equal("host.example:8443", u.authority)
      assert.equal("", url.parse("http://@h/").userinfo)
      assert.is_nil(url.parse("http://h/a@b").userinfo)          -- an '@' in the path is the path's
      assert.equal("/a@b", url.parse("http://h/a@b").path)
    end)

    it("refuses two '@' and backslashes in the authority (parsers disagree on the host)", function()
      refused("http://a@evil.example@api.example/", "more than one '@'")
      refused("http://evil.example\\@api.example/", "backslash")
      refused("http://api.example\\evil/", "backslash")
      refused("http://us er@h/", "space")
      refused("http://u[1]@h/", "userinfo")
      refused("http://u%zz@h/", "userinfo")
    end)

    it("IPv6 literals in brackets, lowercased, with or without a port", function()
      local u = url.parse("http://[::1]:8080/x")
      assert.equal("[::1]", u.host); assert.equal(8080, u.port); assert.equal("[::1]:8080", u.authority)
      assert.equal("[2001:db8::ab]", url.parse("https://[2001:DB8::AB]/").host)
      assert.equal(443, url.parse("https://[2001:db8::1]").port)
      assert.equal("[::ffff:192.0.2.1]", url.parse("http://[::ffff:192.0.2.1]/").host)
      assert.equal("[1:2:3:4:5:6:7:8]", url.parse("http://[1:2:3:4:5:6:7:8]/").host)
      assert.equal("[1:2:3:4:5:6:1.2.3.4]", url.parse("http://[1:2:3:4:5:6:1.2.3.4]/").host)
      for _, bad in ipairs({ "http://[]/", "http://[:1]/", "http://[1:2:3:4:5:6:7:8:9]/", "http://[1::2::3]/",
                             "http://[12345::1]/", "http://[::1%25eth0]/", "http://[fe80::1%eth0]/",
                             "http://[::g]/", "http://[1:2:3:4:5:6:7]/", "http://[::1.2.3.256]/",
                             "http://[1.2.3.4]/", "http://[::1]x/", "http://[::1/", "http://::1/",
                             "http://[1:2:3:4:5:6:7::8]/" }) do
        refused(bad)
      end
    end)

    it("ports: explicit, default, empty, leading zeros; out of range refused", function()
      assert.equal(80, url.parse("http://h:/").port)
      assert.equal(80, url.parse("http://h:0080/").port)
      assert.equal("h", url.parse("http://h:0080/").authority)
      assert.equal(65535, url.parse("http://h:65535/").port)
      assert.equal("h:443", url.parse("http://h:443/").authority)   -- 443 is not http's default
      refused("http://h:0/", "port"); refused("http://h:65536/", "port")
      refused("http://h:99999999999999999999/", "port")
      refused("http://h:-1/", "port"); refused("http://h:8o/", "port"); refused("http://h:80:80/", "port")
    end)

    it("hosts: ASCII names and IPv4, trailing dot kept; empty labels and encodings refused", function()
      assert.equal("a.com.", url.parse("http://A.com./").host)
      assert.equal("my_service", url.parse("http://my_service:8080/").host)
      refused("http:///path", "no host"); refused("http://:80/", "no host"); refused("http://u@/", "no host")
      refused("http://a..com/", "empty label"); refused("http://.a.com/", "empty label")
      refused("http://./", "empty label"); refused("http://a.com../", "empty label")
      refused("http://%61pi.example/", "percent-encoded")
      -- an encoded '/' keeps "api.example%2F" in the userinfo: the host is evil
      assert.equal("evil", url.parse("http://api.example%2F@evil/").host)
      assert.is_false(url.same_origin("http://api.example/", "http://api.example%2F@evil/"))
      refused("http://b\195\188cher.example/", "invalid characters")
      refused("http://a!b.example/", "invalid characters")
    end)

    it("refuses spaces and control characters anywhere", function()
      for _, s in ipairs({ "http://h/a b", "http://h/a\r\nX-Injected: 1", "http://h/\0", "http://h/\127",
                           " http://h/", "http://h/\t", "http://h\n/", "http://h/?q=a b" }) do
        refused(s, "space or a control character")
      end
    end)

    it("http and https only, absolute only", function()
      refused("ftp://h/x", "unsupported URL scheme 'ftp'")
      refused("file:///etc/passwd", "unsupported")
      refused("javascript://h/", "unsupported")
      refused("//h/x", "not absolute"); refused("/x", "not absolute"); refused("h/x", "not absolute")
      refused("http:/h/x", "not absolute"); refused("", "not absolute")
    end)

    it("errors never repeat the URL (it may hold a password or a signed query)", function()
      local err = refused("http://user:s3cret-pw@h:99999/?sig=s3cret-sig")
      assert.is_nil(err:find("s3cret", 1, true))
      err = refused("ftp://user:s3cret-pw@h/")
      assert.is_nil(err:find("s3cret", 1, true))
    end)

    it("raises on a non-string, naming the argument", function()
      assert.has_error(function() url.parse(nil) end, "bad argument #1 to 'parse' (string expected, got nil)")
      assert.has_error(function() url.origin(1) end, "bad argument #1 to 'origin' (string expected, got number)")
      assert.has_error(function() url.same_origin("http://h", {}) end,
        "bad argument #2 to 'same_origin' (string expected, got table)")
    end)
  end)

  describe("origin", function()
    it("is scheme://host:port, the port always written", function()
      assert.equal("https://api.u-gen.ai:443", url.origin("https://api.u-gen.ai/api/v1?x=1#f"))
      assert.equal("http://127.0.0.1:8080", url.origin("http://127.0.0.1:8080/api/v1"))
      assert.equal("http://[::1]:80", url.origin("http://[::1]/"))
    end)

    it("the same origin, however it is written", function()
      local same = {
        { "http://a.com:80", "http://A.COM" },
        { "https://a.com:443/x", "HTTPS://a.com/y?z" },
        { "http://user:pw@a.com/", "http://a.com:0080" },
        { "http://a.com:/", "http://a.com" },
        { "http://[::1]:80/", "http://[::1]" },
        { "http://[ABCD::1]/", "http://[abcd::1]:80/" },
      }
      for _, p in ipairs(same) do
        assert.is_true(url.same_origin(p[1], p[2]), p[1] .. " vs " .. p[2])
        assert.equal(url.origin(p[1]), url.origin(p[2]))
      end
    end)

    it("different origins stay different (credentials never cross them)", function()
      local different = {
        { "http://a.com", "https://a.com" },                 -- scheme
        { "https://a.com", "https://a.com:8443" },           -- port
        { "http://a.com", "http://a.com:443" },              -- 443 is https's default, not http's
        { "https://a.com", "https://a.com.:443" },           -- trailing dot: not the same name
        { "https://a.com", "https://b.a.com" },
        { "https://a.com", "https://a.com.evil.example" },
        { "https://a.com", "https://a.com@evil.example" },   -- userinfo "a.com", host evil.example
        { "http://[::1]", "http://[0::1]" },                 -- no canonical IPv6 form: never equal
        { "http://127.0.0.1", "http://127.1" },
        { "http://a.com", "http://a.com\\@evil.example" },   -- refused: never the same origin
        { "http://a.com", "http://a@b@a.com" },
        { "http://a.com", "ftp://a.com" },
      }
      for _, p in ipairs(different) do
        assert.is_false(url.same_origin(p[1], p[2]), p[1] .. " vs " .. p[2])
        assert.is_false(url.same_origin(p[2], p[1]), p[2] .. " vs " .. p[1])
      end
      assert.is_false(url.same_origin("nonsense", "nonsense"))   -- two refused URLs are not one origin
    end)

    it("an unparsable URL has no origin", function()
      local o, err = url.origin("http://a@b@c/")
      assert.is_nil(o); assert.is_string(err)
      assert.is_nil(url.origin("/relative/path"))
    end)
  end)

  describe("resolve", function()
    -- RFC 3986 5.4.1 (the http: subset; the base ends in a query)
    local base = "http://a/b/c/d;p?q"
    local rfc = {
      ["g"] = "http://a/b/c/g", ["./g"] = "http://a/b/c/g", ["g/"] = "http://a/b/c/g/",
      ["/g"] = "http://a/g", ["//g"] = "http://g/", ["?y"] = "http://a/b/c/d;p?y",
      ["g?y"] = "http://a/b/c/g?y", ["#s"] = "http://a/b/c/d;p?q", ["g#s"] = "http://a/b/c/g",
      [";x"] = "http://a/b/c/;x", ["g;x"] = "http://a/b/c/g;x", [""] = "http://a/b/c/d;p?q",
      ["."] = "http://a/b/c/", ["./"] = "http://a/b/c/", [".."] = "http://a/b/", ["../"] = "http://a/b/",
      ["../g"] = "http://a/b/g", ["../.."] = "http://a/", ["../../"] = "http://a/", ["../../g"] = "http://a/g",
      -- abnormal examples (5.4.2)
      ["../../../g"] = "http://a/g", ["../../../../g"] = "http://a/g", ["/./g"] = "http://a/g",
      ["/../g"] = "http://a/g", ["g."] = "http://a/b/c/g.", [".g"] = "http://a/b/c/.g",
      ["g.."] = "http://a/b/c/g..", ["..g"] = "http://a/b/c/..g", ["./../g"] = "http://a/b/g",
      ["./g/."] = "http://a/b/c/g/", ["g/./h"] = "http://a/b/c/g/h", ["g/../h"] = "http://a/b/c/h",
      ["g;x=1/./y"] = "http://a/b/c/g;x=1/y", ["g;x=1/../y"] = "http://a/b/c/y",
      ["g?y/./x"] = "http://a/b/c/g?y/./x", ["g?y/../x"] = "http://a/b/c/g?y/../x",
      ["g#s/./x"] = "http://a/b/c/g", ["g#s/../x"] = "http://a/b/c/g",
    }
    for ref, want in pairs(rfc) do
      it("RFC 3986 example '" .. ref .. "'", function()
        local got, u = url.resolve(base, ref)
        assert.equal(want, got)
        assert.is_table(u); assert.equal(want, u.scheme .. "://" .. u.authority .. u.target)
      end)
    end

    it("absolute locations: normalised, dot segments removed, checked", function()
      assert.equal("https://other.example/x", url.resolve("http://a/b", "HTTPS://Other.Example:443/y/../x"))
      assert.equal("http://g:8080/p", url.resolve("https://a/b", "//g:8080/p"):gsub("^https", "http"))
      assert.equal("https://g:8080/p", url.resolve("https://a/b", "//g:8080/p"))
    end)

    it("relative locations keep the base's userinfo and port", function()
      assert.equal("http://u:p@a:8080/x?y", url.resolve("http://u:p@a:8080/b/c", "/x?y"))
    end)

    it("refuses what parse refuses, and control characters in the location", function()
      assert.is_nil(url.resolve("http://a/b", "ftp://a/x"))
      assert.is_nil(url.resolve("http://a/b", "//a@b@c/"))
      assert.is_nil(url.resolve("http://a/b", "/x\r\nSet-Cookie: a=1"))
      assert.is_nil(url.resolve("http://a/b", "/x y"))
      local r, err = url.resolve("nonsense", "/x")
      assert.is_nil(r); assert.truthy(err:find("^base "))
      assert.has_error(function() url.resolve("http://a/", nil) end,
        "bad argument #2 to 'resolve' (string expected, got nil)")
    end)
  end)

  it("remove_dot_segments (RFC 3986 5.2.4)", function()
    assert.equal("/a/g", url.remove_dot_segments("/a/b/c/./../../g"))
    assert.equal("mid/6", url.remove_dot_segments("mid/content=5/../6"))
    assert.equal("/", url.remove_dot_segments("/.."))
    assert.equal("/a/", url.remove_dot_segments("/a/b/.."))
    assert.equal("/a//c", url.remove_dot_segments("/a//b/../c"))
    assert.equal("/a/%2E%2E/b", url.remove_dot_segments("/a/%2E%2E/b"))   -- only literal dots
    assert.equal("/plain/path", url.remove_dot_segments("/plain/path"))
  end)

  it("redact hides userinfo, query and fragment, also in malformed URLs", function()
    assert.equal("https://<redacted>@h/p?<redacted>", url.redact("https://user:secret@h/p?sig=secret"))
    assert.equal("https://<redacted>@h/", url.redact("https://a@b@h/"))
    assert.equal("https://<redacted>@h/", url.redact("https://user:pass/word@h/"))   -- unencoded '/'
    assert.equal("<redacted>@h/x", url.redact("user:secret@h/x"))                    -- no scheme
    assert.equal("<redacted>@h", url.redact("http:/user:secret@h"))
    assert.equal("https://h/?<redacted>", url.redact("https://h/?a=x@y"))
    assert.equal("https://h/p?<redacted>", url.redact("https://h/p#frag"))
    assert.equal("https://h/", url.redact("https://h/"))
  end)

  describe("building", function()
    it("encode_component keeps only unreserved bytes", function()
      assert.equal("abc-XYZ_0.9~", url.encode_component("abc-XYZ_0.9~"))
      assert.equal("a%20b%2Fc%3F%26%3D%25%2B%23", url.encode_component("a b/c?&=%+#"))
      assert.equal("%C3%BC%00%0D%0A", url.encode_component("\195\188\0\r\n"))
      assert.equal("", url.encode_component(""))
      -- every byte, against the RFC's definition written out here (ASCII only, whatever the locale)
      local all, want = {}, {}
      for b = 0, 255 do
        local c = string.char(b)
        all[#all + 1] = c
        want[#want + 1] = c:find("^[A-Za-z0-9._~-]$") and c or string.format("%%%02X", b)
      end
      assert.equal(table.concat(want), url.encode_component(table.concat(all)))
      assert.equal("x%FFy", url.encode_component("x\255y"))
    end)

    it("encode_segment encodes separators; dot_segment finds what must be refused instead", function()
      assert.equal("a.b", url.encode_segment("a.b"))
      assert.equal("..%2F..%2Fetc", url.encode_segment("../../etc"))
      assert.equal("a%3Fb%23c%5C", url.encode_segment("a?b#c\\"))
      assert.has_error(function() url.encode_segment(5) end,
        "bad argument #1 to 'encode_segment' (string expected, got number)")
      for _, v in ipairs({ ".", "..", "../x", "x/..", "a/./b", "..\\x", "x\\.", "/../" }) do
        assert.is_true(url.dot_segment(v), v)
      end
      for _, v in ipairs({ "...", ".x", "x.", "a..b", "a.b/c", "", "%2E%2E", 5 }) do
        assert.is_false(url.dot_segment(v), tostring(v))
      end
    end)

    it("scalar_string writes integers without exponent, floats exactly, booleans as words", function()
      assert.equal("42", url.scalar_string(42))
      assert.equal("42", url.scalar_string(42.0))
      assert.equal("-9007199254740991", url.scalar_string(-9007199254740991))
      assert.equal("0.10000000000000001", url.scalar_string(0.1))
      assert.equal("true", url.scalar_string(true)); assert.equal("false", url.scalar_string(false))
      assert.equal("x y", url.scalar_string("x y"))
    end)

    it("build_query: sorted keys, lists repeat the key, nil and the skip value dropped", function()
      local null = setmetatable({}, { __name = "null" })
      assert.equal("", url.build_query(nil))
      assert.equal("", url.build_query({}))
      assert.equal("", url.build_query({ a = null }, null))
      assert.equal("?a=1&b=x%20y&c=true&tag=1&tag=2",
        url.build_query({ tag = { 1, null, 2 }, c = true, b = "x y", a = 1, d = null }, null))
      assert.equal("?k%26=v%3D", url.build_query({ ["k&"] = "v=" }))
      assert.has_error(function() url.build_query("a=1") end,
        "bad argument #1 to 'build_query' (table expected, got string)")
    end)
  end)
end)
