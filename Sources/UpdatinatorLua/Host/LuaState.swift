internal import CLua
import Foundation
import Updatinator

/// A Lua 5.4 state with a sandbox, limits, and Swift functions callable from Lua.
///
/// Lua errors never unwind through Swift: Swift functions registered here return normally and
/// a C trampoline raises their errors afterwards, and Swift calls into Lua only through
/// `lua_pcallk`. A state belongs to one thread at a time.
public final class LuaState {
    /// What a script may use.
    public struct Options: Sendable {
        /// Grants the `io` and `os` libraries.
        public var allowOS = false
        /// Strict globals: created only at a script's top level, never read before assigned.
        public var strictGlobals = true
        /// Lua instructions per call into Lua (a script run, a policy callback); nil for none.
        public var instructionLimit: Int? = 200_000_000
        /// Seconds of wall-clock time per call into Lua, on the monotonic clock; nil for none.
        /// Checked with the instruction count and by host functions that wait (`upd.sleep`);
        /// time spent in host functions that do long I/O on purpose (fetch, apply, deploy,
        /// check, report…, see `untimed`) does not count.
        public var timeLimit: Double? = 60
        /// Bytes the whole state may allocate, its host objects included; nil for none.
        public var memoryLimit: Int? = 256 << 20
        /// The paths `upd` functions may use (`AllowedPaths`); nil for any (with `allowOS`, or
        /// for a host that names none).
        public var allowedPaths: AllowedPaths?
        /// The device id scripts see (`upd.system.device_id`, checks and reports); nil reads /etc/machine-id.
        public var deviceID: String?
        /// The device's secret key file, which signs checks and reports (made on first use).
        public var deviceKey = DefaultPaths.deviceKey
        /// The deployment's enrolment token, which checks and reports prove they know; nil for none.
        public var enrolmentToken: [UInt8]?
        /// The time scripts see, in seconds since the epoch, for tests; nil is the clock's.
        public var fixedTime: Double?
        /// Where `upd.system` reads the machine's power supplies.
        public var powerSupplyDirectory = "/sys/class/power_supply"
        /// The CA file that https mirrors' and servers' certificates must chain to; nil for the system's store.
        public var caFile: String?

        public init() {}
    }

    let L: OpaquePointer
    private let limits: UnsafeMutablePointer<CLua_Limits>
    /// Functions and objects Lua holds pointers to; they live as long as the state.
    private var functions = [LuaFunction]()
    /// Values the host keeps in the registry, by name (`luaL_ref` references).
    var references = [String: Int32]()
    /// Calls into Lua in progress (callbacks nest inside a script's call).
    private var depth = 0
    public let options: Options
    /// Where `print` writes; the front end chooses (by default, nowhere).
    public var output: (String) -> Void = { _ in }
    /// Where `upd.log` writes, with the level; the front end chooses (by default, nowhere).
    public var log: (String, String) -> Void = { _, _ in }
    /// The tree that `upd` functions act on when a script gives no `root` (`run --root`).
    public var root: String? {
        didSet {
            CLua_pushglobaltable(L)
            push("upd")
            lua_rawget(L, -2)
            push("root")
            push(root.map { LuaValue.string($0) } ?? .nil)
            lua_rawset(L, -3)
            CLua_pop(L, 2)
        }
    }
    /// The settings file `upd.config` reads (`--config`).
    public var configFile: String?
    /// What the script asked with `upd.schedule`: seconds between ticks, and the random jitter.
    public internal(set) var schedule: (every: Double, jitter: Double)?
    /// The clock scripts see: `Options.fixedTime`, else now.
    var now: Double { options.fixedTime ?? Date().timeIntervalSince1970 }
    /// This device's id, as scripts see it.
    func deviceID() throws -> String { try DeviceIdentity.read(configured: options.deviceID) }
    /// The transport's options for `mirrors`, trusting the configured CA file.
    func fetchOptions(_ mirrors: [String]) -> FetchOptions {
        var options = FetchOptions(mirrors: mirrors)
        options.caFile = self.options.caFile
        return options
    }
    /// The file `upd.state` keeps its values in; nil keeps them in memory only.
    public var stateFile: String?
    /// The file the engine keeps channel serials and the verified time in (`FreshnessStore`),
    /// out of scripts' reach; nil keeps them in memory only.
    public var freshnessFile: String?
    /// The freshness state without a file, and the manifest hashes verified decisions and
    /// channels named, by image and version (`LuaState+Verified.swift`).
    var freshness: FreshnessState?
    var announcedManifests: [String: String] = [:]
    /// A script asked for the machine to reboot once its call is over (`upd.system.request_reboot`).
    public internal(set) var rebootRequested = false

    public init(options: Options = Options()) throws {
        self.options = options
        limits = .allocate(capacity: 1)
        limits.initialize(to: CLua_Limits())
        limits.pointee.memory_limit = options.memoryLimit.map { size_t($0) } ?? 0
        limits.pointee.instruction_limit = Int64(options.instructionLimit ?? 0)
        limits.pointee.time_limit_ns = options.timeLimit.map { Int64($0 * 1e9) } ?? 0
        limits.pointee.host_active = 1
        guard let state = CLua_newstate(limits) else {
            limits.deallocate()
            throw LuaError(message: "cannot create a Lua state")
        }
        L = state
        CLua_sethook(L)
        try Sandbox.install(in: self)
    }

    deinit {
        lua_close(L)
        limits.deallocate()
    }

    /// Throws unless the script may use `path` so (`Options.allowedPaths`).
    func checkPath(_ path: String, for use: AllowedPaths.Use) throws {
        try options.allowedPaths?.check(path, for: use)
    }

    /// Throws unless the script may read the mirror or manifest at `location`: a URL is any
    /// host's, but a local directory or a `file://` URL is a path.
    func checkLocation(_ location: String) throws {
        if location.hasPrefix("file://") { return try checkPath(String(location.dropFirst(7)), for: .read) }
        if let scheme = location.range(of: "://"), location[..<scheme.lowerBound].allSatisfy(\.isLetter) { return }
        try checkPath(location, for: .read)
    }

    /// Bytes the state has allocated.
    public var memoryInUse: Int { Int(limits.pointee.used) }

    /// Asks a running script to stop at its next instruction check (a single store), and
    /// cancels what a host function is waiting for (`whileWaiting`).
    public func interrupt() {
        CLua_interrupt(limits)
        cancellers.cancelAll()
    }

    /// A handle that other threads (a signal handler's, a watchdog's) may use on this state.
    public var interrupter: LuaInterrupter { LuaInterrupter(self) }

    /// What a host function waiting now would have cancelled by `interrupt`.
    let cancellers = LuaCancellers()

    /// The monotonic time (ns) by which the current call into Lua must end; 0 when none (no
    /// call, no time limit, or inside an untimed host function). Any thread may read it.
    var deadline: Int64 { CLua_deadline(limits) }

    /// Whether the current call must stop (asked to, or past its deadline): from then on the
    /// call ends, as the hook ends it, once the host function returns. For Swift code that
    /// works in steps.
    func mustStop() -> Bool {
        let deadline = self.deadline
        return limits.pointee.stopping != 0 || CLua_interrupt_pending(limits) != 0 || deadline != 0 && CLua_now_ns() >= deadline
    }

    /// Whether an interrupt was asked for (clearing it), for the REPL's prompt.
    public func takeInterrupt() -> Bool {
        CLua_take_interrupt(limits) != 0
    }

    /// Runs a host function's long I/O (a fetch, an apply, a request to the school server),
    /// whose time does not count against the time limit, and which `interrupt` cancels with
    /// `cancel`. Lua callbacks it makes (`on_progress`) each get the time the call had left.
    func untimed<T>(cancel: (@Sendable () -> Void)? = nil, _ body: () throws -> T) rethrows -> T {
        let saved = deadline
        let left = saved == 0 ? nil : max(0, saved - CLua_now_ns())
        let outerLeft = pausedTimeLeft
        pausedTimeLeft = left
        CLua_set_deadline(limits, 0)
        defer {
            pausedTimeLeft = outerLeft
            CLua_set_deadline(limits, left.map { CLua_now_ns() + $0 } ?? 0)
        }
        return try whileWaiting(cancel: cancel, body)
    }

    /// Runs `body` with `cancel` called by `interrupt` (at once, if one is pending).
    func whileWaiting<T>(cancel: (@Sendable () -> Void)?, _ body: () throws -> T) rethrows -> T {
        guard let cancel else { return try body() }
        let id = cancellers.add(cancel)
        defer { cancellers.remove(id) }
        if CLua_interrupt_pending(limits) != 0 { cancel() }
        return try body()
    }

    /// The time a call had left when an untimed host function began; nil when none.
    private var pausedTimeLeft: Int64?

    /// Charges a host object of `bytes` against the memory limit, collecting garbage first when
    /// it would not fit; throws when it still does not.
    func charge(_ bytes: Int, for what: String) throws {
        let limit = Int(limits.pointee.memory_limit)
        if limit != 0 && Int(limits.pointee.used) + bytes > limit {
            CLua_collectgarbage(L)
            if Int(limits.pointee.used) + bytes > limit {
                throw LuaMemoryLimit(message: "memory limit exceeded (\(limit) bytes): no room for \(what) of \(bytes) bytes")
            }
        }
        limits.pointee.used += size_t(bytes)
        liveObjects += 1
    }

    /// Gives back what `charge` took, when the object is collected or closed.
    func release(_ bytes: Int) {
        limits.pointee.used -= size_t(bytes)
        liveObjects -= 1
    }

    /// Host objects this state holds, not yet collected or closed.
    private(set) var liveObjects = 0

    private var loadedPolicyState: PolicyState?

    func policyState() throws -> PolicyState {
        if let loadedPolicyState { return loadedPolicyState }
        let state = try PolicyState(file: stateFile)
        loadedPolicyState = state
        return state
    }

    // MARK: Running Lua

    /// Loads a script file (text only) and runs it with `arguments` as `arg` and `...`.
    public func runFile(_ path: String, arguments: [String] = []) throws {
        let source: Data
        do { source = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw LuaError(message: "cannot read \(path): \(error.localizedDescription)")
        }
        try runScript(source, path: path, arguments: arguments)
    }

    /// Runs the text of the script file `path`, read before, as `runFile` runs the file.
    public func runScript(_ source: Data, path: String, arguments: [String] = []) throws {
        try load(source, chunkName: "@" + path)
        lua_createtable(L, Int32(arguments.count), 1)
        push(path)
        lua_rawseti(L, -2, 0)
        for (i, a) in arguments.enumerated() {
            push(a)
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        setGlobal("arg")
        for a in arguments { push(a) }
        try protectedCall(arguments: Int32(arguments.count), results: 0)
    }

    /// Runs a chunk of text and returns its results converted to Swift values.
    @discardableResult
    public func run(_ code: String, chunkName: String = "=(string)") throws -> [LuaValue] {
        let base = lua_gettop(L)
        try load(Data(code.utf8), chunkName: chunkName)
        try protectedCall(arguments: 0, results: LUA_MULTRET)
        let values = (base + 1..<lua_gettop(L) + 1).map { value(at: $0) }
        lua_settop(L, base)
        return values
    }

    /// Calls a global function, if the script defined it; returns its results, or nil when the
    /// global is not a function.
    public func callGlobal(_ name: String, _ arguments: [LuaValue] = []) throws -> [LuaValue]? {
        let base = lua_gettop(L)
        CLua_pushglobaltable(L)
        push(name)
        lua_rawget(L, -2)
        CLua_remove(L, -2)
        guard lua_type(L, -1) == LUA_TFUNCTION else {
            lua_settop(L, base)
            return nil
        }
        for a in arguments { push(a) }
        try protectedCall(arguments: Int32(arguments.count), results: LUA_MULTRET)
        let values = (base + 1..<lua_gettop(L) + 1).map { value(at: $0) }
        lua_settop(L, base)
        return values
    }

    /// Sets a global to the value on top of the stack (popping it), bypassing strict globals.
    func setGlobal(_ name: String) {
        CLua_pushglobaltable(L)
        CLua_insert(L, -2)
        push(name)
        CLua_insert(L, -2)
        lua_rawset(L, -3)
        CLua_pop(L, 1)
    }

    func load(_ source: [UInt8], chunkName: String) throws { try load(Data(source), chunkName: chunkName) }

    func load(_ source: Data, chunkName: String) throws {
        let status = source.withUnsafeBytes { bytes in
            CLua_loadbuffer(L, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count, chunkName)
        }
        guard status == LUA_OK else {
            let message = CLua_tostring(L, -1).map { String(cString: $0) } ?? "cannot load \(chunkName)"
            CLua_pop(L, 1)
            throw LuaError(message: message)
        }
    }

    /// Calls the function below `arguments` values on the stack, with a fresh instruction budget
    /// and a traceback on error. Leaves `results` values (all, for LUA_MULTRET).
    func protectedCall(arguments: Int32, results: Int32, on thread: OpaquePointer? = nil) throws {
        let L = thread ?? self.L
        let handlerIndex = lua_gettop(L) - arguments
        lua_pushcclosure(L, CLua_traceback, 0)
        CLua_insert(L, handlerIndex)
        // A call from the host starts a fresh budget and deadline; a callback a script gave
        // shares them (inside an untimed host function, it gets the time the call had left).
        if depth == 0 {
            limits.pointee.instructions_left = limits.pointee.instruction_limit
            CLua_set_deadline(limits, limits.pointee.time_limit_ns == 0 ? 0 : CLua_now_ns() + limits.pointee.time_limit_ns)
        } else if let pausedTimeLeft {
            CLua_set_deadline(limits, CLua_now_ns() + pausedTimeLeft)
        }
        let hostActive = limits.pointee.host_active
        limits.pointee.host_active = 0
        depth += 1
        let status = CLua_pcall(L, arguments, results, handlerIndex)
        depth -= 1
        limits.pointee.host_active = hostActive
        let stop = limits.pointee.stopping
        if depth == 0 || pausedTimeLeft != nil { CLua_set_deadline(limits, 0) }
        if depth == 0 && stop != 0 {
            // The host's call has returned: the next one runs normally.
            limits.pointee.stopping = 0
            CLua_sethook(self.L)
        }
        CLua_remove(L, handlerIndex)
        guard status == LUA_OK else {
            let text = CLua_tostring(L, -1).map { String(cString: $0) } ?? "error"
            CLua_pop(L, 1)
            CLua_collectgarbage(L)
            // A stop unwinds as a memory error (see CLua_raise_stop): say what stopped it.
            if stop != 0 { throw LuaError(message: stopMessage(stop)) }
            throw LuaError(traceback: text)
        }
    }

    /// Why a call was stopped, where the script was: `script:3: time limit exceeded (1 s)`.
    private func stopMessage(_ reason: Int32) -> String {
        let limits = self.limits.pointee
        let place = withUnsafeBytes(of: limits.where) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        switch reason {
        case CLUA_STOP_INSTRUCTIONS: return place + "instruction limit exceeded (\(limits.instruction_limit) instructions)"
        case CLUA_STOP_TIME: return place + "time limit exceeded (\(Double(limits.time_limit_ns) / 1e9) s)"
        default: return place + "interrupted"
        }
    }

    /// Calls the Lua function at `index` (a callback a script gave) with arguments, from inside a
    /// Swift function that Lua called; its errors come back as a thrown `LuaError`.
    func callFunction(at index: Int32, on L: OpaquePointer, _ arguments: [LuaValue]) throws -> [LuaValue] {
        let absolute = lua_absindex(L, index)
        let base = lua_gettop(L)
        lua_pushvalue(L, absolute)
        for a in arguments { push(a, on: L) }
        try protectedCall(arguments: Int32(arguments.count), results: LUA_MULTRET, on: L)
        let values = (base + 1..<lua_gettop(L) + 1).map { value(at: $0, on: L) }
        lua_settop(L, base)
        return values
    }

    // MARK: Registering Swift functions

    /// Sets `table[name]` (the table on top of the stack) to a Swift function.
    /// (A raw set: the host never runs a metamethod, which could raise outside a protected call.)
    func setFunction(_ name: String, _ body: @escaping (LuaCall) throws -> Int32) {
        push(name)
        pushFunction(name, body)
        lua_rawset(L, -3)
    }

    func pushFunction(_ name: String, on thread: OpaquePointer? = nil, _ body: @escaping (LuaCall) throws -> Int32) {
        let L = thread ?? self.L
        let function = LuaFunction(name: name, state: self, body: body)
        functions.append(function)
        CLua_pushfunction(L, LuaState.dispatch, Unmanaged.passUnretained(function).toOpaque())
    }

    /// The one entry point from Lua into Swift. It never raises: errors are left on the stack
    /// for the trampoline to raise once this frame is gone.
    private static let dispatch: CLua_Dispatch = { L in
        let function = Unmanaged<LuaFunction>.fromOpaque(lua_touserdata(L, CLua_upvalueindex(2))!).takeUnretainedValue()
        let call = LuaCall(L: L!, name: function.name, state: function.state)
        do {
            return try function.body(call)
        } catch let error as LuaArgumentError {
            luaL_where(L, 1)
            lua_pushstring(L, error.message)
            lua_concat(L, 2)
        } catch let error as UpdError {
            // An expected failure (no network, bad signature, no space): `nil, message, code`.
            return call.failure(error)
        } catch let error as LuaError {
            // A callback's error, already with its position: pass it on as it is.
            lua_pushstring(L, error.message)
        } catch {
            luaL_where(L, 1)
            lua_pushstring(L, "\(function.name): \(error)")
            lua_concat(L, 2)
        }
        return CLUA_RAISE
    }
}

/// Interrupts a state from another thread, or reads its deadline: the only things another
/// thread may do with it.
public final class LuaInterrupter: @unchecked Sendable {
    private let state: LuaState
    init(_ state: LuaState) { self.state = state }
    public func interrupt() { state.interrupt() }

    /// How many seconds the current call into Lua is past its time limit (its deadline), or nil
    /// when it is not (or no call runs). A call still past it after a grace is stuck inside a C
    /// function that no hook interrupts (`LuaWatchdog`).
    public var secondsPastDeadline: Double? {
        let deadline = state.deadline
        guard deadline != 0 else { return nil }
        let past = CLua_now_ns() - deadline
        return past > 0 ? Double(past) / 1e9 : nil
    }

    /// The time limit per call, in seconds; nil for none.
    public var timeLimit: Double? { state.options.timeLimit }
}

/// What `interrupt` cancels: the waits of host functions in progress (any thread may cancel).
final class LuaCancellers: @unchecked Sendable {
    private let waits = Locked([Int: @Sendable () -> Void]())
    private let next = Locked(0)

    func add(_ cancel: @escaping @Sendable () -> Void) -> Int {
        let id = next.withLock { $0 += 1; return $0 }
        waits.withLock { $0[id] = cancel }
        return id
    }

    func remove(_ id: Int) { waits.withLock { $0[id] = nil } }

    func cancelAll() {
        for cancel in waits.withLock({ Array($0.values) }) { cancel() }
    }
}

/// A host object that would take the state past its memory limit.
struct LuaMemoryLimit: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A Swift function registered with Lua, with the state it belongs to.
final class LuaFunction {
    let name: String
    /// Not weak: `lua_close` in the state's deinit runs `__gc` functions, when a weak reference
    /// would already read nil. The state outlives every function (it holds them).
    unowned(unsafe) let state: LuaState
    let body: (LuaCall) throws -> Int32

    init(name: String, state: LuaState, body: @escaping (LuaCall) throws -> Int32) {
        self.name = name
        self.state = state
        self.body = body
    }
}

/// An error of a script: its message (`chunk:line: message`) and, when known, the traceback.
public struct LuaError: Error, CustomStringConvertible {
    public let message: String
    public let traceback: String?

    init(message: String) {
        self.message = message
        traceback = nil
    }

    /// From a message handler's text: the message, then "stack traceback:" and the frames.
    init(traceback text: String) {
        if let range = text.range(of: "\nstack traceback:") {
            message = String(text[..<range.lowerBound])
            traceback = String(text[range.lowerBound...].dropFirst())
        } else {
            message = text
            traceback = nil
        }
    }

    public var description: String { message }
}

/// A misuse of a function by a script: raised in Lua as "bad argument #1 to 'verify' (...)".
struct LuaArgumentError: Error {
    let message: String
}
