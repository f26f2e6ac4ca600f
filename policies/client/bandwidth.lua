-- Follows a channel within bandwidth rules: a low rate during school hours and none at night
-- (the rate changes as the window opens or closes during a download), and a daily budget of
-- downloaded bytes kept in upd.state. An upgrade the budget cannot cover waits for tomorrow.
local upd = require "updatinator"

local config = upd.config {
  root = "/",
  mirrors = { "http://school-server/repo" },
  keyring = "/etc/updatinator/keyring",
  channel = "stable",
  school_hours = "08:00-16:00",
  school_rate = 32 * 1024,          -- bytes per second during school hours
  daily_budget = 512 * 1024 * 1024, -- bytes per day
  every = "1h",
  jitter = "10m",
}
upd.schedule { every = config.every, jitter = config.jitter }

-- Today's spending, reset each day (days counted in UTC).
local function spent_today()
  local day = math.floor(upd.time.now() / 86400)
  local budget = upd.state.get("bandwidth") or {}
  if budget.day ~= day then budget = { day = day, bytes = 0 } end
  return budget
end

-- The rate for now: a number during school hours, true (no limit) otherwise.
local function rate_now()
  if upd.time.in_window(config.school_hours) then return config.school_rate end
  return true
end

function tick()
  local budget = spent_today()
  local left = config.daily_budget - budget.bytes
  if left <= 0 then return "deferred: daily budget spent" end

  local keyring = assert(upd.keyring(config.keyring))
  local offer = assert(upd.channel(config.mirrors, config.channel, keyring))
  local installed = assert(upd.manifest.installed(config.root))
  if installed.image == offer.image and installed.version == offer.version then return "up to date" end
  local target = assert(upd.get_manifest(config.mirrors, offer.image, offer.version,
                                         { keyring = keyring, hash = offer.manifest_hash,
                                           size = offer.manifest_size }))
  local plan = assert(upd.plan(installed, target, { root = config.root, mirrors = config.mirrors }))
  if plan.download_bytes > left then
    return ("deferred: needs %d bytes, %d left today"):format(plan.download_bytes, left)
  end

  local rate = rate_now()
  local downloaded = 0
  local ok, report, message = pcall(upd.apply, plan, {
    mirrors = config.mirrors,
    rate_limit = rate ~= true and rate or nil,
    on_progress = function(p)
      downloaded = p.bytes or downloaded
      return rate_now()
    end,
  })
  budget.bytes = budget.bytes + (ok and report and report.bytes_downloaded or downloaded)
  upd.state.set("bandwidth", budget)
  if not ok then error(report, 0) end
  if not report then error(message, 0) end
  return ("applied %s %s at %s"):format(offer.image, offer.version,
                                        rate == true and "full speed" or rate .. " bytes/s")
end
