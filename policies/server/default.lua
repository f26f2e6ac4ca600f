-- The default server policy: channels. A device on "stable" runs the version pinned for
-- stable; a device on "testing" follows the newest version of its image (or the version the
-- repository's signed channel metadata names for that channel).
local upd = require "updatinator"

local config = upd.config {
  image = "debian",             -- the image of devices that do not say theirs
  default_channel = "stable",   -- the channel of devices that do not say theirs
  pins = { stable = "" },       -- channel → version; "" follows the latest
}

function decide(device)
  local image = device.image or config.image
  local channel = device.channel or config.default_channel
  local pin = config.pins[channel]
  local version = (pin ~= nil and pin ~= "") and pin or upd.repo.latest(image, channel)
  if version == nil then return nil end
  return { image = image, version = version }
end
