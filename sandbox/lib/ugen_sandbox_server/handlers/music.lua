-- ugen_sandbox_server.handlers.music: GET /music/catalog (the seeded tracks), GET,
-- POST /music/custom and DELETE /music/custom/{id} (soft delete).
-- Handlers: name -> function(T, params, ctx) -> response (ugen_sandbox_server.http).

local util = require "ugen_sandbox_server.util"
local state = require "ugen_sandbox_server.state"
local clock = require "ugen_sandbox_server.clock"
local uploads = require "ugen_sandbox_server.uploads"
local http = require "ugen_sandbox_server.http"

local ipairs = ipairs
local array = util.array
local E, R = http.error_response, http.response

local H = {}

H["music.catalog"] = function(_, p)
  local out = array()
  local limit = p.limit or 50
  for _, tr in ipairs(state.catalog) do
    if #out >= limit then break end
    if (not p.mood or tr.mood == p.mood:lower()) and (not p.tempo or tr.tempo == p.tempo:lower()) then
      out[#out + 1] = tr
    end
  end
  return R(200, out)
end

local function track_public(tr)
  return { id = tr.id, title = tr.title, url = tr.url, filename = tr.filename, content_type = tr.content_type,
           size_bytes = tr.size_bytes, is_active = tr.is_active, created_at = tr.created_at,
           deleted_at = util.orNull(tr.deleted_at) }
end

H["music.list"] = function(T)
  local out = array()
  for i = #T.music, 1, -1 do
    if T.music[i].is_active then out[#out + 1] = track_public(T.music[i]) end
  end
  return R(200, out)
end

H["music.upload"] = function(T, _, ctx)
  local rec, resp = uploads.store(T, ctx.ep, ctx.parts.file, "music")
  if not rec then return resp end
  local tr = { id = rec.id, title = ctx.parts.title.data, url = rec.url, filename = rec.filename,
               content_type = rec.content_type, size_bytes = rec.size_bytes, is_active = true,
               created_at = rec.created_at }
  T.music[#T.music + 1] = tr
  T.music_by_id[tr.id] = tr
  return R(201, track_public(tr))
end

H["music.delete"] = function(T, p)
  local tr = T.music_by_id[p.music_id]
  if not tr or not tr.is_active then
    for _, c in ipairs(state.catalog) do
      if c.id == p.music_id then
        return E(403, "FORBIDDEN", "Catalog tracks cannot be deleted")
      end
    end
    return E(404, "MUSIC_NOT_FOUND", "Music track not found")
  end
  tr.is_active = false
  tr.deleted_at = clock.iso_now()
  return R(200, track_public(tr))
end

return H
