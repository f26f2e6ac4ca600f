-- The field upgrade a technician runs from a USB stick holding a repository:
--   updatinator run --root / --allow-path /media/usb policies/client/field-upgrade.lua -- /media/usb IMAGE VERSION [KEYRING]
-- It verifies the manifest against the laptop's own keyring (never one from the stick), shows
-- what the move costs, applies it with a progress line, and checks the tree afterwards.
local upd = require "updatinator"

local stick, image, version, keyring_dir = ...
if not (stick and image and version) then
  error("usage: field-upgrade.lua -- USB_DIR IMAGE VERSION [KEYRING_DIR]", 0)
end
local root = upd.root or "/"
local mirror = "file://" .. stick
local keyring = assert(upd.keyring(keyring_dir or "/etc/updatinator/keyring"))

local installed = assert(upd.manifest.installed(root))
local target = assert(upd.get_manifest(mirror, image, version, { keyring = keyring }))
local plan = assert(upd.plan(installed, target, { root = root, mirrors = mirror }))
print(("%s %s -> %s %s: %d contents (%d bytes) to copy, %d bytes reused, needs %d bytes free"):format(
  installed.image, installed.version, image, version, plan.contents_to_obtain, plan.download_bytes,
  plan.reused_bytes, plan.required_free_bytes))

local report = assert(upd.apply(plan, { mirrors = mirror, on_progress = function(p)
  if p.total_bytes and p.total_bytes > 0 then
    print(("progress: %d/%d blobs, %d%%"):format(p.blobs, p.total_blobs, p.bytes * 100 // p.total_bytes))
  end
end }))
assert(upd.fsck(root, target))
print(("done: %s %s, %d bytes copied, %.1f s"):format(image, version, report.bytes_downloaded, report.seconds))
