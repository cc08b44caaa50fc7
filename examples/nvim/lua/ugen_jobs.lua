-- examples/nvim: a small Neovim plugin on lua-ugen. :UgenJobs [N] creates N
-- jobs (the docs' main job) and follows them in a scratch buffer, one line a
-- job, while you keep editing: the editor's own libuv loop (vim.loop) drives
-- the SDK, which ugen.new{} picks by itself inside Neovim. Each job runs in a
-- task (client:spawn); on_progress and the task bodies run where the editor's
-- API may be called, so they write the buffer directly. When every job has
-- ended the plugin fires `User UgenJobsDone` (autocmd hook for scripts).
--
--   eval "$(bin/ugen sandbox start --speed 5)"      # UGEN_BASE_URL, UGEN_API_KEY
--   nvim --cmd "set rtp+=examples/nvim" +"UgenJobs 5"
--
-- Environment: UGEN_BASE_URL, UGEN_API_KEY (or UGEN_JWT), UGEN_POLL_INTERVAL
-- (seconds between polls of one job, default 1).
-- luacheck: read globals vim
local ugen = require "ugen"

local M = {}

local client                        -- made on first use: one per editor session

local function set_line(buf, i, text)
  if vim.api.nvim_buf_is_valid(buf) then vim.api.nvim_buf_set_lines(buf, i - 1, i, false, { text }) end
end

-- start n jobs; -> the buffer that shows them
function M.start(n)
  client = client or ugen.new{}
  local interval = tonumber(os.getenv("UGEN_POLL_INTERVAL") or "") or 1
  local buf = vim.api.nvim_create_buf(true, true)
  vim.api.nvim_buf_set_name(buf, ("ugen-jobs-%d"):format(buf))
  local lines = {}
  for i = 1, n do lines[i] = ("%02d creating"):format(i) end
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.api.nvim_set_current_buf(buf)

  local left = n
  for i = 1, n do
    client:spawn(function()
      local job, err = client.jobs:create{
        product_name = "Premium Wireless Headphones",
        product_image_url = "https://example.com/headphones.jpg",
        persona_id = "09d3a33a-3eb0-480a-80df-0c64dbf7c98f",
        video_model = "veo3_fast",
        segment_count = 3,
        interaction_mode = "holdable",
        caption_style = "tiktok_karaoke",
        music_enabled = true,
      }
      local final
      if job then
        final, err = client.jobs:wait(job.job_id, {
          interval = interval,
          on_progress = function(j)
            set_line(buf, i, ("%02d %-10s %3d%%  %s"):format(i, tostring(j.current_stage),
              math.floor(tonumber(j.progress_percent) or 0), job.job_id))
          end,
        })
      end
      if final then
        set_line(buf, i, ("%02d done      %s"):format(i, tostring(final.final_video_url)))
      else
        set_line(buf, i, ("%02d FAILED    %s"):format(i, tostring(err)))
      end
      left = left - 1
      if left == 0 then vim.cmd("doautocmd <nomodeline> User UgenJobsDone") end
    end)
  end
  return buf
end

return M
