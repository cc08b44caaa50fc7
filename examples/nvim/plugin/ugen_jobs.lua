-- examples/nvim/plugin: the :UgenJobs [N] command (see lua/ugen_jobs.lua).
-- From a source checkout (examples/nvim inside it) the checkout's lua/ and its
-- LuaJIT build of the C core come first on the module paths, so the example
-- works before `luarocks --lua-version 5.1 make`; an installed rock otherwise.
-- luacheck: read globals vim
local here = debug.getinfo(1, "S").source:gsub("^@", "")
local root = vim.fn.fnamemodify(here, ":p:h:h:h:h")           -- .../examples/nvim/plugin/x.lua -> checkout
if vim.fn.filereadable(root .. "/lua/ugen/init.lua") == 1 then
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/luajit/?.so;" .. package.cpath
end

vim.api.nvim_create_user_command("UgenJobs", function(o)
  require("ugen_jobs").start(tonumber(o.args) or 3)
end, { nargs = "?", desc = "create U-Gen jobs and follow them in a buffer" })
