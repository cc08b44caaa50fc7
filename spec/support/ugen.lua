-- Test launcher for the `ugen` CLI from a source tree (run from the repo root):
--   lua5.4 spec/support/ugen.lua jobs list        luajit spec/support/ugen.lua help
-- Same as bin/ugen, with the tree's lua/ and build/<interpreter>/ first on the paths.
local sub = (type(jit) == "table" and "luajit") or _VERSION:match("%d+%.%d+")
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/" .. sub .. "/?.so;" .. package.cpath
os.exit(require("ugen.cli").main(arg))
