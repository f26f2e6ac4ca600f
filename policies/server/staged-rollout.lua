-- Staged rollout: a new version reaches 5 %, then 25 %, then every device, by a stable
-- bucket of each device id; a stage opens once most devices of the stage before have
-- reported success. The rollout halts by itself when the share of failed reports for the
-- new version passes a threshold, and devices already there stay.
local upd = require "updatinator"

local config = upd.config {
  image = "",                -- the image rolled out; "" for the one each device runs (or the repository's only one)
  version = "",              -- the version being rolled out; "" for the newest
  from = "",                 -- the version every other device keeps; "" for what it runs
  salt = "rollout",          -- change it to reshuffle the buckets for the next rollout
  stages = { 5, 25, 100 },   -- percent of devices, in order
  advance_when = 0.8,        -- share of a stage's devices that must be done before the next
  halt_failure_rate = 0.1,   -- halt when failed / (done + failed) passes this ...
  halt_min_reports = 10,     -- ... once this many devices reported
}

-- The stage's percent, from how many devices are done: stage n + 1 opens when the number of
-- devices at the new version reaches advance_when times stage n's share of the fleet (and
-- at least one).
local function percent(done, fleet)
  local stages = config.stages
  for i = 1, #stages - 1 do
    if done < math.max(1, config.advance_when * fleet * stages[i] / 100) then return stages[i] end
  end
  return stages[#stages]
end

local function halted(image, version)
  local done = upd.fleet.count { image = image, version = version, status = "done" }
  local failed = upd.fleet.count { target_version = version, status = "failed" }
  local reports = done + failed
  return reports >= config.halt_min_reports and failed / reports > config.halt_failure_rate, done
end

-- The image rolled out to this device: the configured one, else the one it runs, else the
-- repository's only image.
local function rolled_out(device)
  if config.image ~= "" then return config.image end
  if device.image then return device.image end
  local images = upd.repo.images()
  if #images == 1 then return images[1] end
end

function decide(device)
  local image = rolled_out(device)
  if image == nil or (device.image or image) ~= image then return nil end
  local version = config.version ~= "" and config.version or upd.repo.latest(image)
  if version == nil or device.version == version then return nil end
  local stop, done = halted(image, version)
  local share = percent(done, upd.fleet.count { image = image })
  if stop or upd.rollout.bucket(device.device, config.salt) >= share then
    if config.from == "" then return nil end
    return { image = image, version = config.from }
  end
  return { image = image, version = version }
end
