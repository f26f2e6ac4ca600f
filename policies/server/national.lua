-- The national policy: what each school's devices may run. School servers that follow this
-- server (serve --upstream ... --upstream-keyring) fetch their school's rollout, signed with
-- this server's decision key, and hold their own policies, pins and controls to it: a school
-- may narrow it, never widen it. National operators' pauses and halts (updatinator fleet halt
-- IMAGE, on this server) are laid over it by the server.
local upd = require "updatinator"

local config = upd.config {
  image = "debian",      -- the image rolled out
  versions = {},         -- versions every device may move to (the one before, to go back to)
  staged = "",           -- the version being rolled out; "" for the repository's newest
  percent = 0,           -- the share of each school's devices it has reached, by stable bucket
  schools = {},          -- school id → percent, for pilot schools ahead of the rest
  salt = "national",     -- change it to reshuffle the buckets for the next rollout
}

local function staged()
  if config.staged ~= "" then return config.staged end
  return upd.repo.latest(config.image)
end

function school_rollout(school)
  local percent = config.schools[school.school] or config.percent
  return { [config.image] = { versions = config.versions, staged = staged(), percent = percent, salt = config.salt } }
end

-- A laptop that asks this server itself gets what a school's would.
function decide(device)
  local version = staged()
  if (device.image or config.image) ~= config.image or version == nil then return nil end
  if upd.rollout.bucket(device.device, config.salt) >= config.percent then
    return { reason = "held", message = ("the rollout of %s has reached %d %% of devices"):format(version, config.percent) }
  end
  return { image = config.image, version = version }
end
