-- busted helper: loaded once per run before any spec.
-- Puts ./lua (the SDK) and ./build/<interpreter>/ (the C core built by
-- `make build`) first on the module paths, so specs test this tree.
local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%d+%.%d+")
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
-- UGEN_BUILD_DIR overrides the C-core directory (scripts/check.sh: build/asan).
package.cpath = (os.getenv("UGEN_BUILD_DIR") or ("./build/" .. sub)) .. "/?.so;" .. package.cpath
