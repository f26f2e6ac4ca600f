-- The default client policy: every few hours (with jitter, so a school's laptops do not all
-- ask at once), look at the channel; accept an offer only when the disk has the space the
-- plan needs at its peak, and the laptop is on mains power or has enough battery; download
-- from neighbouring laptops first, then the school server; apply in place.
local upd = require "updatinator"

local config = upd.config {
  root = "/",
  peers = {},                                -- other laptops, tried first
  mirrors = { "http://school-server/repo" }, -- the school server
  keyring = "/etc/updatinator/keyring",
  channel = "stable",
  min_battery = 50,                          -- percent, when not on mains power
  every = "4h",
  jitter = "1h",
}
upd.schedule { every = config.every, jitter = config.jitter }

local function sources()
  local all = {}
  for _, url in ipairs(config.peers) do all[#all + 1] = url end
  for _, url in ipairs(config.mirrors) do all[#all + 1] = url end
  return all
end

-- Why not now, or nil when the plan may run.
local function objection(plan)
  local free = upd.system.free_bytes(config.root)
  if free < plan.required_free_bytes then
    return ("needs %d bytes free, has %d"):format(plan.required_free_bytes, free)
  end
  if not upd.system.on_ac_power() then
    local battery = upd.system.battery_percent() or 0
    if battery < config.min_battery then
      return ("on battery at %d %%, below %d %%"):format(battery, config.min_battery)
    end
  end
  return nil
end

function tick()
  local keyring = assert(upd.keyring(config.keyring))
  local offer = assert(upd.channel(config.mirrors, config.channel, keyring))
  local installed = assert(upd.manifest.installed(config.root))
  if installed.image == offer.image and installed.version == offer.version then return "up to date" end
  local target = assert(upd.get_manifest(sources(), offer.image, offer.version,
                                         { keyring = keyring, hash = offer.manifest_hash }))
  local plan = assert(upd.plan(installed, target, { root = config.root, mirrors = sources() }))
  local why = objection(plan)
  if why then
    upd.log.info("update to " .. offer.version .. " deferred: " .. why)
    return "deferred: " .. why
  end
  assert(upd.apply(plan, { mirrors = sources() }))
  return ("applied %s %s"):format(offer.image, offer.version)
end
