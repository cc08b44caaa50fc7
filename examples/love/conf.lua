-- LÖVE 11 configuration of the example (examples/love/main.lua).
-- luacheck: globals love
function love.conf(t)
  t.identity = "lua-ugen-example"
  t.window.title = "lua-ugen: U-Gen jobs in a LÖVE game"
  t.window.width, t.window.height = 800, 560
  -- the game paces itself at 60 Hz (end of love.draw); vsync would add waits for a vblank that a
  -- virtual display (Xvfb, CI) does not have (longest frame of an empty game there: 57-61 ms with
  -- vsync, 40-42 ms without)
  t.window.vsync = 0
  -- the example plays no sound: without audio modules LÖVE also starts on machines without a
  -- sound device (a CI runner, a container)
  t.modules.audio = false
  t.modules.sound = false
  t.modules.joystick = false
  t.modules.physics = false
  t.modules.video = false
end
