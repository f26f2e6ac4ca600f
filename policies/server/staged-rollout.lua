-- Staged rollout: a new version reaches 5 %, then 25 %, then every device, by a stable
-- bucket of each device id; a stage opens once most devices of the stage before have
-- reported success, or when an operator advances it (`updatinator fleet advance IMAGE`).
-- The rollout halts by itself when the share of failed reports for the new version passes a
-- threshold, and devices already there stay. A device the stage has not reached is told it is
-- "held"; a halted rollout says why. (Operators' pauses, halts and pins the server applies
-- itself, before and after this policy.)
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

-- The stage (1-based) of the rollout of version from how many devices are done: stage n + 1
-- opens when the number of devices at the new version reaches advance_when times stage n's
-- share of the fleet (and at least one); operators may have advanced this version further.
local function stage(image, version, done, fleet)
  local stages = config.stages
  local reached = #stages
  for i = 1, #stages - 1 do
    if done < math.max(1, config.advance_when * fleet * stages[i] / 100) then reached = i break end
  end
  local operators = upd.rollout.state(image)
  local advanced = operators.stage_version == version and operators.stage or 0
  return math.min(#stages, math.max(reached, advanced + 1))
end

-- Why the rollout of version halted, or nil; and how many devices are done.
local function halted(image, version)
  local done = upd.fleet.count { image = image, version = version, status = "done" }
  local failed = upd.fleet.count { target_image = image, target_version = version, status = "failed" }
  local reports = done + failed
  if reports >= config.halt_min_reports and failed / reports > config.halt_failure_rate then
    return ("%d of %d devices failed, more than %d %%"):format(failed, reports, math.floor(config.halt_failure_rate * 100 + 0.5)), done
  end
  return nil, done
end

local function target(image)
  return config.version ~= "" and config.version or upd.repo.latest(image)
end

-- The image rolled out to this device: the configured one, else the one it runs, else the
-- repository's only image.
local function rolled_out(device)
  if config.image ~= "" then return config.image end
  if device.image then return device.image end
  local images = upd.repo.images()
  if #images == 1 then return images[1] end
end

-- The rollout as the dashboard and `updatinator fleet rollouts` show it.
function rollout(image)
  if config.image ~= "" and image ~= config.image then return nil end
  local version = target(image)
  if version == nil then return nil end
  local why, done = halted(image, version)
  local n = stage(image, version, done, upd.fleet.count { image = image })
  return { version = version, stage = n, stages = #config.stages, percent = config.stages[n], halted = why }
end

function decide(device)
  local image = rolled_out(device)
  if image == nil or (device.image or image) ~= image then return nil end
  local version = target(image)
  if version == nil or device.version == version then return nil end
  local why, done = halted(image, version)
  local n = stage(image, version, done, upd.fleet.count { image = image })
  if why or upd.rollout.bucket(device.device, config.salt) >= config.stages[n] then
    if config.from ~= "" and device.version ~= config.from then return { image = image, version = config.from } end
    if why then return { reason = "halted", message = why } end
    return { reason = "held", message = ("stage %d of %d reaches %d %% of devices"):format(n, #config.stages, config.stages[n]) }
  end
  return { image = image, version = version }
end
