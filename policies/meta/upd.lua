---@meta
-- Annotations of Updatinator's Lua API for editors (LuaCATS, as read by lua-language-server).
-- The reference is docs/lua-api.md. Expected failures return nil, message, code.

---@alias upd.Code "io"|"verification"|"no_space"|"network"|"corrupt"|"differences"|"nothing_to_do"|"usage"
---@alias upd.Mirrors string|string[]

---@class upd.Entry
---@field path string
---@field type "directory"|"file"|"hardlink"|"symlink"|"character device"|"block device"|"fifo"
---@field mode integer
---@field uid integer
---@field gid integer
---@field mtime integer
---@field size? integer
---@field hash? string
---@field blob_size? integer
---@field target? string

---@class upd.Manifest
---@field image string
---@field version string
---@field entry_count integer
---@field total_bytes integer
---@field hash string
---@field verified boolean
---@field source string
local Manifest = {}
---@param path string
---@return upd.Entry|nil
function Manifest:get(path) end
---@return fun(): upd.Entry|nil
function Manifest:entries() end

---@class upd.Keyring
---@field directory string
---@field threshold integer
local Keyring = {}
---@param manifest upd.Manifest
---@return true|nil ok, string? message, upd.Code? code
function Keyring:verify(manifest) end

---@class upd.Changes
---@field created integer
---@field replaced integer
---@field removed integer
---@field reowned integer
---@field remoded integer
---@field retimed integer
---@field xattrs_changed integer

---@class upd.Plan
---@field contents_to_obtain integer
---@field download_bytes integer
---@field deltas integer
---@field delta_saved_bytes integer
---@field contents_from_blobs integer
---@field blob_directory_bytes integer
---@field reused_bytes integer
---@field write_bytes integer
---@field peak_disk_bytes integer
---@field required_free_bytes integer
---@field steps integer
---@field root string
---@field from {image: string, version: string}
---@field to {image: string, version: string}
---@field changes upd.Changes

---@class upd.Progress
---@field bytes? integer
---@field total_bytes? integer
---@field blobs? integer
---@field total_blobs? integer
---@field rate? number
---@field eta? number
---@field steps_done? integer
---@field total_steps? integer

---@alias upd.OnProgress fun(p: upd.Progress): integer|boolean|nil

---@class upd.ApplyReport
---@field already_current boolean
---@field resumed boolean
---@field superseded? string the manifest hash an interrupted apply was moving to, when this one took over from it
---@field bytes_written integer
---@field bytes_reused integer
---@field bytes_downloaded integer
---@field blobs_downloaded integer
---@field planned_peak_extra_disk integer
---@field observed_peak_extra_disk integer
---@field seconds number
---@field deltas integer
---@field fallbacks string[]

---@class upd.Channel
---@field channel string
---@field image string
---@field version string
---@field manifest_hash string
---@field manifest_size? integer absent in metadata published before it was written
---@field serial integer
---@field expires integer
---@field published? integer

---@class upd
---@field root string|nil
upd = {}

upd.manifest = {}
---@param path_or_url string
---@return upd.Manifest|nil, string? message, upd.Code? code
function upd.manifest.load(path_or_url) end
---@param root string
---@return upd.Manifest|nil, string? message, upd.Code? code
function upd.manifest.installed(root) end

---@param mirrors upd.Mirrors
---@param image string
---@param version string
---@param options? {keyring?: upd.Keyring, dir?: string, hash?: string, size?: integer}
---@return upd.Manifest|nil, string? message, upd.Code? code
function upd.get_manifest(mirrors, image, version, options) end

---@param a upd.Manifest
---@param b upd.Manifest
---@return {added: string[], removed: string[], changed: string[], added_bytes: integer, removed_bytes: integer, new_contents: integer, download_bytes: integer}
function upd.diff(a, b) end

---@param dir string
---@return upd.Keyring|nil, string? message, upd.Code? code
function upd.keyring(dir) end

---@param from upd.Manifest
---@param to upd.Manifest
---@param options? {root?: string, blobs?: string[], mirrors?: upd.Mirrors, keyring?: upd.Keyring}
---@return upd.Plan|nil, string? message, upd.Code? code
function upd.plan(from, to, options) end

---@param plan upd.Plan
---@param options {mirrors: upd.Mirrors, cache: string, rate_limit?: integer, concurrency?: integer, on_progress?: upd.OnProgress}
---@return {blobs: integer, bytes: integer, retries: integer, failovers: integer, seconds: number}|nil, string? message, upd.Code? code
function upd.fetch(plan, options) end

---@param plan upd.Plan
---@param options? {mirrors?: upd.Mirrors, blobs?: string[], root?: string, rate_limit?: integer, concurrency?: integer, on_progress?: upd.OnProgress, keyring?: upd.Keyring}
---@return upd.ApplyReport|nil, string? message, upd.Code? code
function upd.apply(plan, options) end

---@param root string
---@param manifest upd.Manifest
---@return true|nil, string? message, upd.Code? code, string[]? findings
function upd.fsck(root, manifest) end

---@param mirrors upd.Mirrors
---@param name string
---@param keyring upd.Keyring
---@return upd.Channel|nil, string? message, upd.Code? code
function upd.channel(mirrors, name, keyring) end

---@class upd.Decision
---@field update boolean
---@field expires integer
---@field image? string
---@field version? string
---@field manifest_path? string
---@field manifest_hash? string
---@field manifest_size? integer
---@field peers string[]
---@field rate_limit? integer
---@field not_before? integer
---@field window? string
---@field reason? "up-to-date"|"held"|"paused"|"halted"|"pinned"|"policy-error" why there is no update
---@field message? string the server's words for it

---@param server_url string
---@param request table
---@param decision_keyring upd.Keyring
---@return upd.Decision|nil, string? message, upd.Code? code
function upd.check(server_url, request, decision_keyring) end

---@param server_url string
---@param status {status: "checking"|"downloading"|"applying"|"staged"|"done"|"failed"|"deferred", [string]: any}
---@return true|nil, string? message, upd.Code? code
function upd.report(server_url, status) end

---@generic T: table
---@param defaults T
---@return T
function upd.config(defaults) end

---@param options {every: string, jitter?: string}
function upd.schedule(options) end

---@param seconds number
function upd.sleep(seconds) end

upd.system = {}
---@param path string
---@return integer
function upd.system.free_bytes(path) end
---@return boolean
function upd.system.on_ac_power() end
---@return integer|nil
function upd.system.battery_percent() end
---@return string
function upd.system.device_id() end
---Asks the agent to reboot the machine once this tick has returned.
function upd.system.request_reboot() end

upd.time = {}
---@return number
function upd.time.now() end
---@param window string "HH:MM-HH:MM"
---@param time? number
---@return boolean
function upd.time.in_window(window, time) end

upd.state = {}
---@param key string
---@return any
function upd.state.get(key) end
---@param key string
---@param value boolean|number|string|table|nil
function upd.state.set(key, value) end

upd.log = {}
---@param ... any
function upd.log.info(...) end
---@param ... any
function upd.log.warn(...) end
---@param ... any
function upd.log.error(...) end

---@return boolean|string
function tick() end

-- On the school server only (server policies, policies/server/):

upd.repo = {}
---@return string[]
function upd.repo.images() end
---@param image string
---@return string[] versions oldest first
function upd.repo.versions(image) end
---@param image string
---@param channel? string
---@return string|nil
function upd.repo.latest(image, channel) end

upd.fleet = {}
---@param filter {image?: string, version?: string, status?: string, channel?: string, target_image?: string, target_version?: string}
---@return integer
function upd.fleet.count(filter) end
---@param options {image: string, version: string, near?: string, prefix?: integer, limit?: integer}
---@return string[]
function upd.fleet.peers(options) end

upd.rollout = {}
---@param device_id string
---@param salt? string
---@return integer bucket 0 to 99
function upd.rollout.bucket(device_id, salt) end

---What operators set for the image's rollout (server policies only): its state, their reason,
---and how many stages they advanced it.
---@param image string
---@return {state: "active"|"paused"|"halted", reason?: string, stage: integer}
function upd.rollout.state(image) end

---@class upd.DeviceRequest
---@field device string
---@field nonce string
---@field address? string
---@field image? string
---@field version? string
---@field channel? string
---@field free_bytes? integer
---@field peer? string

---@param device upd.DeviceRequest
---@return {image: string, version: string, rate_limit?: integer, not_before?: integer, window?: string, peers?: string[]}|nil
function decide(device) end

---@class upd.Deployment
---@field name string
---@field image string
---@field version string
---@field current boolean
---@field previous boolean
---@field pending boolean
---@field own_bytes integer
---@field shared_bytes integer

---@param plan upd.Plan
---@param options {sysroot: string, mirrors?: string[], blobs?: string[], rate_limit?: integer, concurrency?: integer, keyring?: upd.Keyring}
---@return {name: string, already_current: boolean, files_linked: integer, bytes_linked: integer, files_written: integer, bytes_written: integer, blobs_downloaded: integer, bytes_downloaded: integer, seconds: number, deltas: integer, fallbacks: string[]}|nil, string? message, upd.Code? code
function upd.deploy(plan, options) end

---@param sysroot string
---@return {from: string, to: string}|nil, string? message, upd.Code? code
function upd.rollback(sysroot) end

---@param sysroot string
---@return {current?: upd.Deployment, previous?: upd.Deployment, pending?: string, tries: integer, rolled_back?: string, deployments: upd.Deployment[]}|nil, string? message, upd.Code? code
function upd.status(sysroot) end
