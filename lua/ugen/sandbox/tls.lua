-- ugen.sandbox.tls: a private CA and the certificates it signs, made with the
-- openssl CLI (UGEN_OPENSSL names another binary), for the sandbox's HTTPS
-- listener (`ugen sandbox start --tls`) and for tests (spec/support/tls.lua).
-- Public as require("ugen.sandbox").tls (the same table).
--
-- A CA lives in one directory: ca.key, ca.crt (EC P-256, 10 years,
-- CA:TRUE pathlen 0), ca.cnf (its `openssl ca` setup), index.txt, serial and
-- issued/ (openssl ca's database). Certificates it issues go next to it as
-- NAME.key / NAME.crt: EC P-256, CA:FALSE, digitalSignature, EKU serverAuth,
-- the SAN given (DNS and IP entries), 397 days unless dates are given.
--
--   tls.ca(dir[, { cn = }]) -> { dir, key, cert } (a usable CA in dir, else a new one)
--   tls.issue(ca, { name =, dns =, ip =, cn =, days = | not_before =, not_after = })
--                           -> { key, cert } (e.g. expired ones)
--   tls.server_files(dir)   -> { cainfo, cert, key } (DIR/tls/, made once, reused while valid)

local sys = require "ugen.sandbox.sys"
local argerror = require("ugen.args").argerror

local type, tostring, ipairs = type, tostring, ipairs
local format, concat = string.format, table.concat
local q, run, read_file, write_file, abspath, norm =
  sys.q, sys.run, sys.read_file, sys.write_file, sys.abspath, sys.norm

local tls = {}

tls.CA_DAYS = 3650
tls.CERT_DAYS = 397
tls.MIN_LEFT = 86400 -- a CA or certificate expiring within a day is not reused

local function openssl_bin()
  local env = os.getenv("UGEN_OPENSSL")
  if env and env ~= "" then return env end
  return "openssl"
end

-- Runs `openssl ARGS` in dir with umask 077 -> true | nil, message (its output's tail)
local function openssl(dir, args)
  local log = dir .. "/openssl.log"
  if run(format("cd %s && umask 077 && %s %s >%s 2>&1", q(dir), q(openssl_bin()), args, q(log))) then
    os.remove(log)
    return true
  end
  local out = (read_file(log) or ""):gsub("%s+$", "")
  if #out > 600 then out = "..." .. out:sub(-600) end
  return nil, "openssl " .. args:match("^%S+") .. " failed in " .. dir .. ": " .. out
end

-- A shell test: the same public key in the key file and the certificate?
local function key_matches_sh(key, cert)
  local bin = q(openssl_bin())
  return format('a=$(%s pkey -in %s -pubout 2>/dev/null) && b=$(%s x509 -in %s -noout -pubkey 2>/dev/null) '
                .. '&& [ -n "$a" ] && [ "$a" = "$b" ]', bin, q(key), bin, q(cert))
end

local function check_name(fname, field, s, pattern, desc)
  if type(s) ~= "string" or not s:find(pattern) then
    error(format("bad argument to 'tls.%s' (%s: %s expected, got %s)", fname, field, desc, tostring(s)), 3)
  end
end

local CA_CNF = [[
# ugen.sandbox: the signing setup of this private CA (openssl ca, run in this directory)
[ ca ]
default_ca = sandbox_ca
[ sandbox_ca ]
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = any_cn
unique_subject = no
copy_extensions = none
email_in_dn = no
[ any_cn ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
[ ca_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
]]

local NEWKEY = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

local function ca_table(dir)
  return { dir = dir, key = dir .. "/ca.key", cert = dir .. "/ca.crt" }
end

--- A usable CA already in dir (files present, key matching, not expiring) -> ca | nil
function tls.find_ca(dir)
  local ca = ca_table(dir)
  for _, f in ipairs({ "ca.key", "ca.crt", "ca.cnf", "index.txt", "serial" }) do
    if not read_file(dir .. "/" .. f) then return nil end
  end
  if not run(format("cd %s && %s x509 -in ca.crt -noout -checkend %d >/dev/null 2>&1 && %s", q(dir),
                    q(openssl_bin()), tls.MIN_LEFT, key_matches_sh("ca.key", "ca.crt"))) then
    return nil
  end
  return ca
end

--- A private CA in dir: the one already there when usable, else a new one.
-- opts.cn: its common name (default "U-Gen sandbox CA").
-- -> ca = { dir =, key =, cert = } | nil, message
function tls.ca(dir, opts)
  if type(dir) ~= "string" then argerror(1, "tls.ca", "string expected, got " .. type(dir), 2) end
  opts = opts or {}
  local cn = opts.cn or "U-Gen sandbox CA"
  check_name("ca", "cn", cn, "^[%w][%w .-]*$", "letters, digits, ' ', '.' or '-'")
  dir = norm(abspath(dir))
  local found = tls.find_ca(dir)
  if found then return found end
  if not run("mkdir -p " .. q(dir .. "/issued") .. " && chmod 700 " .. q(dir)) then
    return nil, "cannot create " .. dir
  end
  for _, f in ipairs({ "ca.key", "ca.crt", "index.txt", "index.txt.attr", "index.txt.old", "serial", "serial.old" }) do
    os.remove(dir .. "/" .. f)
  end
  local ok, err = write_file(dir .. "/ca.cnf", CA_CNF)
  if not ok then return nil, "cannot write " .. dir .. "/ca.cnf: " .. tostring(err) end
  write_file(dir .. "/index.txt", "")
  ok, err = openssl(dir, "rand -hex -out serial 16")
  if not ok then return nil, err end
  ok, err = openssl(dir, format("req -x509 -new %s -keyout ca.key -out ca.crt -days %d -sha256 -subj %s "
    .. "-config ca.cnf -extensions ca_ext", NEWKEY, tls.CA_DAYS, q("/CN=" .. cn)))
  if not ok then return nil, err end
  run("chmod 644 " .. q(dir .. "/ca.crt")) -- the certificate is public; the key stays 0600
  return ca_table(dir)
end

--- Issue a certificate signed by ca (from tls.ca) -> { key =, cert = } | nil, message
-- opts: name (file base name in ca.dir, default "server"), dns = { names }, ip = { addresses },
-- cn (default: the first DNS name or IP), days (default 397) or not_before and not_after
-- ("YYYYMMDDHHMMSSZ", UTC; may both lie in the past: an expired certificate).
function tls.issue(ca, opts)
  opts = opts or {}
  if type(ca) ~= "table" or type(ca.dir) ~= "string" then
    argerror(1, "tls.issue", "a CA from tls.ca expected", 2)
  end
  local name = opts.name or "server"
  check_name("issue", "name", name, "^[%w_-]+$", "letters, digits, '_' or '-'")
  local san = {}
  for _, d in ipairs(opts.dns or {}) do
    if type(d) ~= "string" or not d:find("^[%w*][%w.-]*$") then
      error("bad argument to 'tls.issue' (dns: host names expected, got " .. tostring(d) .. ")", 2)
    end
    san[#san + 1] = "DNS:" .. d
  end
  for _, a in ipairs(opts.ip or {}) do
    if type(a) ~= "string" or not a:find("^[%x:.]+$") then
      error("bad argument to 'tls.issue' (ip: addresses expected, got " .. tostring(a) .. ")", 2)
    end
    san[#san + 1] = "IP:" .. a
  end
  if #san == 0 then error("bad argument to 'tls.issue' (dns or ip: at least one name expected)", 2) end
  local cn = opts.cn or (opts.dns and opts.dns[1]) or opts.ip[1]
  check_name("issue", "cn", cn, "^[%w*][%w .:*-]*$", "a plain name")
  local dates
  if opts.not_before or opts.not_after then
    for _, d in ipairs({ opts.not_before, opts.not_after }) do
      if type(d) ~= "string" or not d:find("^%d%d%d%d%d%d%d%d%d%d%d%d%d%dZ$") then
        error("bad argument to 'tls.issue' (not_before and not_after: \"YYYYMMDDHHMMSSZ\" expected, got "
              .. tostring(d) .. ")", 2)
      end
    end
    dates = "-startdate " .. opts.not_before .. " -enddate " .. opts.not_after
  else
    local days = opts.days or tls.CERT_DAYS
    if type(days) ~= "number" or days < 1 or days % 1 ~= 0 then
      error("bad argument to 'tls.issue' (days: positive integer expected, got " .. tostring(days) .. ")", 2)
    end
    dates = format("-days %d", days)
  end
  local dir = ca.dir
  local ext = "[ ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
    .. "extendedKeyUsage = serverAuth\nsubjectAltName = " .. concat(san, ", ")
    .. "\nauthorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n"
  local ok, err = write_file(dir .. "/" .. name .. ".ext", ext)
  if not ok then return nil, "cannot write " .. dir .. "/" .. name .. ".ext: " .. tostring(err) end
  os.remove(dir .. "/" .. name .. ".crt")
  ok, err = openssl(dir, format("req -new %s -keyout %s.key -out %s.csr -subj %s -config ca.cnf",
                                NEWKEY, name, name, q("/CN=" .. cn)))
  if ok then
    ok, err = openssl(dir, format("ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in %s.csr "
                                  .. "-out %s.crt %s -extfile %s.ext -extensions ext", name, name, dates, name))
  end
  os.remove(dir .. "/" .. name .. ".csr")
  if not ok then return nil, err end
  run("chmod 644 " .. q(dir .. "/" .. name .. ".crt"))
  return { key = dir .. "/" .. name .. ".key", cert = dir .. "/" .. name .. ".crt" }
end

-- The sandbox's server certificate in dir (with ca.crt): reused while it
-- chains to that CA, is a server certificate for 127.0.0.1 and localhost,
-- matches its key and neither it nor the CA expires within MIN_LEFT.
local function server_cert_ok(dir)
  for _, f in ipairs({ "ca.crt", "server.crt", "server.key" }) do
    if not read_file(dir .. "/" .. f) then return false end
  end
  return run(format("cd %s && %s verify -CAfile ca.crt -attime %d -purpose sslserver -verify_hostname localhost "
                    .. "-verify_ip 127.0.0.1 server.crt >/dev/null 2>&1 && %s", q(dir), q(openssl_bin()),
                    os.time() + tls.MIN_LEFT, key_matches_sh("server.key", "server.crt")))
end

--- The sandbox's TLS files under dir/tls, made once and then reused while valid:
-- -> { cainfo = CA cert path, cert = server cert path, key = server key path } | nil, message
function tls.server_files(dir)
  if type(dir) ~= "string" then
    argerror(1, "tls.server_files", "string expected, got " .. type(dir), 2)
  end
  local tdir = norm(abspath(dir)) .. "/tls"
  local files = { cainfo = tdir .. "/ca.crt", cert = tdir .. "/server.crt", key = tdir .. "/server.key" }
  if server_cert_ok(tdir) then return files end
  local ca, err = tls.ca(tdir)
  if not ca then return nil, err end
  local c
  c, err = tls.issue(ca, { name = "server", dns = { "localhost" }, ip = { "127.0.0.1" }, cn = "127.0.0.1" })
  if not c then return nil, err end
  return files
end

return tls
