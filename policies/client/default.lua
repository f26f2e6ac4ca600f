-- The default client policy: every few hours (with jitter, so a school's laptops do not all
-- ask at once), ask the school server what to run (or, without one, follow the channel);
-- accept an offer only when the disk has the space the plan needs at its peak, and the
-- laptop is on mains power or has enough battery; download from neighbouring laptops first,
-- then the school server; apply in place (a running system's root with live = true, then
-- reboot with reboot = true), or stage a deployment and (with reboot = true) reboot into it; report to the school server. A staged deployment is reported done once the
-- machine has booted it and marked it good, and failed when the boot counter rolled it back;
-- an image rolled back on this machine is not tried again.
local upd = require "updatinator"

local config = upd.config {
  root = "/",
  mode = "in-place",                         -- or "staged": deployments side by side in `sysroot`
  sysroot = "/sysroot",                      -- with mode = "staged"
  live = false,                              -- with mode = "in-place": root is the running system's (its
                                             -- runtime mounts and /var are left alone, /etc is merged)
  reboot = false,                            -- reboot into a new deployment (or a live root's new image) at once
  peers = {},                                -- other laptops, tried first
  mirrors = { "http://school-server/repo" }, -- the school server
  keyring = "/etc/updatinator/keyring",
  channel = "stable",
  server = "",                               -- the school server's URL; "" to follow the channel
  decision_keyring = "/etc/updatinator/decision-keyring",
  peer_url = "",                             -- this laptop's `serve --peer`, advertised to the server
  min_battery = 50,                          -- percent, when not on mains power
  every = "4h",
  jitter = "1h",
}
upd.schedule { every = config.every, jitter = config.jitter }

-- Where to download from: peers the server named, configured peers, then the mirrors.
local function sources(named_peers)
  local all = {}
  for _, url in ipairs(named_peers) do all[#all + 1] = url end
  for _, url in ipairs(config.peers) do all[#all + 1] = url end
  for _, url in ipairs(config.mirrors) do all[#all + 1] = url end
  return all
end

-- Why not now, or nil when the plan may run.
local function objection(plan)
  local free = upd.system.free_bytes(config.mode == "staged" and config.sysroot or config.root)
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

-- What to run: the school server's decision, or the channel's; nil and the decision when the
-- server offers no update (its reason: up-to-date, held, paused, halted, pinned, policy-error).
local function offer(keyring, installed)
  if config.server == "" then
    local channel = assert(upd.channel(config.mirrors, config.channel, keyring))
    return { image = channel.image, version = channel.version, manifest_hash = channel.manifest_hash,
             manifest_size = channel.manifest_size, peers = {} }
  end
  local decision_keyring = assert(upd.keyring(config.decision_keyring))
  local decision = assert(upd.check(config.server, {
    image = installed and installed.image, version = installed and installed.version, channel = config.channel,
    free_bytes = upd.system.free_bytes(config.mode == "staged" and config.sysroot or config.root),
    peer = config.peer_url ~= "" and config.peer_url or nil,
  }, decision_keyring))
  if not decision.update then return nil, decision end
  return decision
end

local function report(status, fields)
  if config.server == "" then return end
  fields.status = status
  local ok, why = upd.report(config.server, fields)
  if not ok then upd.log.warn("report: " .. why) end
end

-- What the machine runs: the installed manifest (in place), or the current deployment's.
local function running()
  if config.mode ~= "staged" then return assert(upd.manifest.installed(config.root)) end
  local status, why, code = upd.status(config.sysroot)
  if not status and code == "usage" then return nil end -- not a sysroot yet: the first deploy makes it
  assert(status, why)
  if not status.current then return nil end
  return assert(upd.manifest.load(config.sysroot .. "/manifests/" .. status.current.name .. ".manifest"))
end

-- In staged mode, what the last boots did, reported once each: the deployment the boot counter
-- rolled back failed; the current one, booted and marked good, is done. Returns the deployment
-- rolled back from, which is not to be tried again.
local function settle()
  local status = upd.status(config.sysroot)
  if not status or not status.current then return nil end
  local rolled_back
  for _, d in ipairs(status.deployments) do
    if d.name == status.rolled_back then rolled_back = d end
  end
  if rolled_back and upd.state.get("reported_rollback") ~= rolled_back.name then
    report("failed", { image = rolled_back.image, version = rolled_back.version, code = "rolled-back",
                       message = "did not come up and get marked good; the boot counter rolled it back" })
    upd.state.set("reported_rollback", rolled_back.name)
  end
  local current = status.current
  if status.pending ~= current.name and upd.state.get("reported_done") ~= current.name then
    report("done", { image = current.image, version = current.version })
    upd.state.set("reported_done", current.name)
  end
  return rolled_back
end

function tick()
  local keyring = assert(upd.keyring(config.keyring))
  local rolled_back = config.mode == "staged" and settle() or nil
  local installed = running()
  local o, refusal = offer(keyring, installed)
  if refusal and refusal.reason ~= "up-to-date" then
    return refusal.reason .. (refusal.message and (": " .. refusal.message) or "")
  end
  if not o or (installed and installed.image == o.image and installed.version == o.version) then return "up to date" end
  if rolled_back and rolled_back.image == o.image and rolled_back.version == o.version then
    return ("held: %s %s was rolled back on this machine"):format(o.image, o.version)
  end
  -- The server's bandwidth rules: not before a time, only within a daily window.
  if o.not_before and upd.time.now() < o.not_before then return "deferred: not before " .. o.not_before end
  if o.window and not upd.time.in_window(o.window) then return "deferred: outside " .. o.window end
  local mirrors = sources(o.peers)
  -- Manifests come from the repositories (peers serve blobs only); contents from peers first.
  local target = assert(upd.get_manifest(config.mirrors, o.image, o.version, { keyring = keyring, hash = o.manifest_hash,
                                                                          size = o.manifest_size }))
  local root = config.mode == "staged" and config.sysroot or config.root
  local plan = assert(upd.plan(installed or target, target,
                               { root = root, mirrors = mirrors, live = config.mode ~= "staged" and config.live }))
  local why = objection(plan)
  if why then
    upd.log.info("update to " .. o.version .. " deferred: " .. why)
    return "deferred: " .. why
  end
  report("applying", { image = o.image, version = o.version })
  local move = config.mode == "staged"
    and function() return upd.deploy(plan, { sysroot = config.sysroot, mirrors = mirrors, rate_limit = o.rate_limit }) end
    or function() return upd.apply(plan, { mirrors = mirrors, rate_limit = o.rate_limit }) end
  local ok, done, message, code = pcall(move)
  if not ok then done, message, code = nil, done, "interrupted" end
  if not done then
    report("failed", { image = o.image, version = o.version, code = code, message = message })
    error(message, 0)
  end
  local peer = config.peer_url ~= "" and config.peer_url or nil
  if config.mode ~= "staged" then
    report("done", { image = o.image, version = o.version, bytes = done.bytes_downloaded, peer = peer })
    for _, path in ipairs(done.etc_conflicts) do
      upd.log.warn(path .. ": changed here and in the new image; the image's version is beside it as " .. path .. ".updatinator-new")
    end
    if config.live and config.reboot then
      upd.system.request_reboot()
      return ("applied %s %s; rebooting into it"):format(o.image, o.version)
    end
    return ("applied %s %s"):format(o.image, o.version)
  end
  report("staged", { image = o.image, version = o.version, bytes = done.bytes_downloaded, peer = peer })
  if config.reboot then
    upd.system.request_reboot()
    return ("deployed %s %s; rebooting into it"):format(o.image, o.version)
  end
  return ("deployed %s %s; it runs from the next boot"):format(o.image, o.version)
end
