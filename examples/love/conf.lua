-- LÖVE 11 configuration of the example (examples/love/main.lua).
-- luacheck: globals love
function love.conf(t)
  t.identity = "lua-ugen-example"
  t.window.title = "lua-ugen: U-Gen jobs in a LÖVE game"
  t.window.width, t.window.height = 800, 560
  t.window.vsync = 1
  -- the example plays no sound: without audio modules LÖVE also starts on machines without a
  -- sound device (a CI runner, a container)
  t.modules.audio = false
  t.modules.sound = false
  t.modules.joystick = false
  t.modules.physics = false
  t.modules.video = false
end
