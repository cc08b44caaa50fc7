std = "min"
max_line_length = 120
include_files = { "lua", "spec", "sandbox/**/*.lua", "examples", "bench/**/*.lua", "bin/ugen", "*.rockspec" }
exclude_files = { ".luarocks", ".install", "build", "examples/openresty/*.conf", "examples/**/*.md", "spec/**/*.c" }

files["spec"] = { std = "+busted" }
files["sandbox"] = { globals = { "ngx" } }
files["lua/ugen/transport/ngx.lua"] = { read_globals = { "ngx" } }
files["lua/ugen/ngx.lua"] = { read_globals = { "ngx" } }
files["examples/openresty"] = { read_globals = { "ngx" } }
files["spec/nginx"] = { read_globals = { "ngx" } }
-- LuaJIT / 5.1 compat names probed at runtime
read_globals = { "jit", "unpack", "setfenv", "table.unpack", "loadstring" }
