-- Follows a signed channel (stable, testing, ...). When the channel names another image or
-- version than the installed one, the tree moves to it, streaming from the mirrors.
-- Replayed (older serial) and expired channel metadata are refused by upd.channel.
local upd = require "updatinator"

local config = upd.config {
  root = "/",
  mirrors = { "http://school-server/repo" },
  keyring = "/etc/updatinator/keyring",
  channel = "stable",
  every = "6h",
  jitter = "30m",
}
upd.schedule { every = config.every, jitter = config.jitter }

function tick()
  local keyring = assert(upd.keyring(config.keyring))
  local offer, why = upd.channel(config.mirrors, config.channel, keyring)
  if not offer then
    upd.log.warn("channel " .. config.channel .. " refused: " .. why)
    return "refused: " .. why
  end
  local installed = assert(upd.manifest.installed(config.root))
  if installed.image == offer.image and installed.version == offer.version then
    return "up to date"
  end
  local target = assert(upd.get_manifest(config.mirrors, offer.image, offer.version,
                                         { keyring = keyring, hash = offer.manifest_hash,
                                           size = offer.manifest_size }))
  local plan = assert(upd.plan(installed, target, { root = config.root, mirrors = config.mirrors }))
  local report = assert(upd.apply(plan, { mirrors = config.mirrors }))
  upd.log.info(("moved to %s %s: %d bytes downloaded"):format(offer.image, offer.version, report.bytes_downloaded))
  return ("applied %s %s"):format(offer.image, offer.version)
end
