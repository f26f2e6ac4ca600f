-- Per-school rules: each school (named by the device, or found by its address) pins a
-- version and may only download in its maintenance window and under a rate limit. Schools
-- not listed follow the newest version.
local upd = require "updatinator"

local config = upd.config {
  image = "debian",
  schools = {
    -- name = { subnet = "A.B.C.", pin = "VERSION", window = "HH:MM-HH:MM", rate_limit = BYTES }
    north = { subnet = "10.1.", pin = "", window = "18:00-06:00", rate_limit = 2000000 },
    south = { subnet = "10.2.", pin = "", window = "", rate_limit = 0 },
  },
}

local function school_of(device)
  if device.school and config.schools[device.school] then return config.schools[device.school] end
  for _, school in pairs(config.schools) do
    if device.address and device.address:sub(1, #school.subnet) == school.subnet then return school end
  end
  return nil
end

function decide(device)
  local image = device.image or config.image
  local school = school_of(device) or {}
  local version = (school.pin and school.pin ~= "") and school.pin or upd.repo.latest(image)
  if version == nil then return nil end
  return {
    image = image,
    version = version,
    window = (school.window and school.window ~= "") and school.window or nil,
    rate_limit = (school.rate_limit and school.rate_limit > 0) and school.rate_limit or nil,
  }
end
