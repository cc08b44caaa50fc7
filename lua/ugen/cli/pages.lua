-- ugen.cli.pages: the list commands of paged endpoints (`ugen jobs list`,
-- `ugen credits transactions`): one page as a table, or every page with --all
-- (through the resource's iterator: jobs:each, credits:each_transaction).

local context = require "ugen.cli.context"
local output = require "ugen.cli.output"
local params = require "ugen.cli.params"
local json = require "ugen.json"

local _M = { _VERSION = "0.1.0" }

local string_format = string.format
local EXIT = context.EXIT
local fail, out_line, err_line, print_json = context.fail, context.out_line, context.err_line, context.print_json

--- The flags a list command adds to its endpoint's (page, page_size, ...).
_M.FLAGS = {
  { name = "all", key = "all", type = "boolean", doc = "every item of every page (ignores --page)" },
}

--- Run a list command: client[resource]:method(params) for one page, or
-- client[resource]:each(params) for all of them; `ep_specs` the endpoint's
-- flags, `cols` the table's columns ({key, title}), `what` the items' name
-- ("jobs"). Returns the exit status.
function _M.run(ctx, resource, method, each, ep_specs, cols, what)
  local c = context.client(ctx)
  local res = c[resource]
  local p = params.values(ctx, ep_specs)
  if ctx.values.all then
    p.page = nil
    if p.page_size == nil then p.page_size = 100 end
    local items = {}
    for item, err in res[each](res, p, { errors = "yield" }) do
      if not item then return fail(ctx, err) end
      items[#items + 1] = item
    end
    if ctx.json then
      print_json(ctx, json.array(items))
    else
      out_line(ctx, output.table(items, cols))
      err_line(ctx, string_format("%d %s", #items, what))
    end
    return EXIT.ok
  end
  local page, err = res[method](res, p)
  if not page then return fail(ctx, err) end
  if ctx.json then print_json(ctx, page); return EXIT.ok end
  out_line(ctx, output.table(page.items or {}, cols))
  local function n(v) return v ~= nil and output.scalar(v) or "?" end
  err_line(ctx, string_format("page %s of %s (%s %s in all, %s per page)", n(page.page), n(page.total_pages),
    n(page.total), what, n(page.page_size)))
  return EXIT.ok
end

return _M
