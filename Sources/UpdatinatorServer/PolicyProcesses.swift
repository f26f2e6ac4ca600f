import Foundation
import Logging
import Updatinator
import UpdatinatorLua

/// The policy worker processes (`PolicyWorker`) of a server, and the calls into them.
///
/// A call takes an idle worker, sends it the call, answers the view requests it makes, and
/// gives the worker back with the results. A call that passes its deadline — in Lua or inside
/// a C function (a backtracking pattern, `string.rep`, `table.sort`, a full collection,
/// `upd.sleep`) — kills its worker with SIGKILL and throws; a worker that dies is noticed by
/// the call it was serving. Either way a supervisor thread reaps it and starts another, after
/// a delay that doubles (up to 30 s) with each worker in a row that could not load the policy
/// or died by itself, so that a policy that crashes cannot make the server fork in a loop.
///
/// Workers are started on the supervisor thread only, which lives as long as the server: each
/// worker asks to be killed when the thread that started it ends (`PR_SET_PDEATHSIG`).
final class PolicyProcesses: Sendable {
    private struct Worker: Sendable {
        let pid: pid_t
        /// The server's end of the worker's socket.
        let fd: Int32
    }

    private enum Job: Sendable {
        case start
        case reap(pid_t)
    }

    private struct State {
        var idle = [Worker]()
        var live = Set<pid_t>()
        var jobs = [Job]()
        /// Workers in a row that could not load the policy or died by themselves.
        var failures = 0
        /// Why the first workers could not load the policy.
        var unloadable: String?
        var starting = true
        var stopped = false
    }

    private let settings: PolicyPool.Settings
    /// The policy's text, read once at start: every worker, a replacement too, runs the policy
    /// the server started with, whatever happens to the file afterwards.
    private let source: String
    private let logger: Logger
    private let state = Locked(State())
    /// Signalled once for each worker put in `idle`, for each job, for each of the first
    /// workers started or not, and by `stop` (for the supervisor's backoff).
    private let idleWorkers = DispatchSemaphore(value: 0)
    private let queuedJobs = DispatchSemaphore(value: 0)
    private let firstWorkers = DispatchSemaphore(value: 0)
    private let stopping = DispatchSemaphore(value: 0)

    /// Starts the workers and waits until they have loaded the policy; a policy that cannot
    /// load throws (usage), as the in-process policy did.
    init(settings: PolicyPool.Settings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: settings.script)) } catch {
            throw UpdError(.usage, "policy cannot read \(settings.script): \(error.localizedDescription)")
        }
        guard data.count < PolicyChannel.maxFrame / 2, let text = String(validating: data, as: UTF8.self) else {
            throw UpdError(.usage, "\(settings.script): a policy must be UTF-8 text under \(PolicyChannel.maxFrame / 2 >> 20) MiB")
        }
        source = text
        for _ in 0..<settings.workers { queue(.start) }
        let supervisor = Thread { [self] in supervise() }
        supervisor.name = "policy supervisor"
        supervisor.start()
        var failure: String?
        for _ in 0..<settings.workers where failure == nil {
            firstWorkers.wait()
            failure = state.withLock { $0.unloadable }
        }
        state.withLock { $0.starting = false }
        if let failure {
            stop()
            throw UpdError(.usage, failure)
        }
    }

    /// Kills every worker and waits for them; the supervisor ends.
    func stop() {
        let pids: Set<pid_t> = state.withLock {
            $0.stopped = true
            for worker in $0.idle { close(worker.fd) }
            $0.idle = []
            return $0.live
        }
        queuedJobs.signal()
        stopping.signal()
        for pid in pids {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }

    /// Calls the policy's function `name` in a worker and returns its results, nil when the
    /// policy does not define it; `view` answers what the policy asks of the server. Throws
    /// `UpdError` for a policy error, a call past `deadline` or a worker that died.
    func call(_ name: String, _ arguments: [LuaValue], view: SchoolView, deadline: DispatchTime) throws -> [LuaValue]? {
        var worker = try take(until: deadline)
        while PolicyChannel(fd: worker.fd).peerIsGone {
            discard(worker, crashed: true)
            worker = try take(until: deadline)
        }
        let channel = PolicyChannel(fd: worker.fd)
        do {
            try channel.send([.string("call"), .string(name)] + arguments)
            while true {
                let message = try channel.receive(until: deadline)
                switch message[0].stringValue {
                case "view":
                    let reply: [LuaValue]
                    do {
                        reply = [.string("answer"), try view.answer(message.count > 1 ? message[1].stringValue ?? "" : "", Array(message.dropFirst(2)))]
                    } catch {
                        reply = [.string("failure"), .string("\(error)")]
                    }
                    try channel.send(reply)
                case "log":
                    log(message)
                case "results":
                    giveBack(worker)
                    return Array(message.dropFirst())
                case "undefined":
                    giveBack(worker)
                    return nil
                case "error":
                    giveBack(worker)
                    throw UpdError(.corrupt, message.count > 1 ? message[1].stringValue ?? "" : "the policy failed")
                default:
                    throw PolicyChannel.Closed(reason: "it sent an unexpected message")
                }
            }
        } catch is PolicyChannel.TimedOut {
            discard(worker, crashed: false)
            throw UpdError(.busy, "\(settings.script): \(name) ran past the policy time limit of \(Self.seconds(settings.timeLimit)); its worker was stopped")
        } catch let error as PolicyChannel.Closed {
            discard(worker, crashed: true)
            throw UpdError(.io, "\(settings.script): the policy worker failed during \(name): \(error.reason)")
        }
    }

    static func seconds(_ value: Double) -> String { String(format: "%g s", value) }

    private func take(until deadline: DispatchTime) throws -> Worker {
        guard idleWorkers.wait(timeout: deadline) == .success, let worker = state.withLock({ $0.idle.popLast() }) else {
            throw UpdError(.busy, "\(settings.script): no policy worker was free within the policy time limit of \(Self.seconds(settings.timeLimit))")
        }
        return worker
    }

    private func giveBack(_ worker: Worker) {
        let kept = state.withLock {
            $0.failures = 0
            if !$0.stopped { $0.idle.append(worker) }
            return !$0.stopped
        }
        if kept { idleWorkers.signal() } else { close(worker.fd) }
    }

    /// Kills a worker that ran past its deadline or failed, and has another started.
    private func discard(_ worker: Worker, crashed: Bool) {
        close(worker.fd)
        let stopped = state.withLock {
            if crashed { $0.failures += 1 }
            return $0.stopped
        }
        guard !stopped else { return }
        kill(worker.pid, SIGKILL)
        queue(.reap(worker.pid))
        queue(.start)
    }

    private func queue(_ job: Job, first: Bool = false) {
        state.withLock { first ? $0.jobs.insert(job, at: 0) : $0.jobs.append(job) }
        queuedJobs.signal()
    }

    private func log(_ message: [LuaValue]) {
        guard message.count == 3, let level = message[1].stringValue, let text = message[2].stringValue else { return }
        logger.log(level: Logger.Level(policyLevel: level), "policy: \(text)")
    }

    // MARK: The supervisor

    private func supervise() {
        while true {
            queuedJobs.wait()
            let next: (job: Job, delay: Double)? = state.withLock {
                guard !$0.stopped, !$0.jobs.isEmpty else { return nil }
                return ($0.jobs.removeFirst(), $0.failures == 0 ? 0 : min(30, 0.1 * pow(2, Double($0.failures - 1))))
            }
            guard let (job, delay) = next else { return }
            switch job {
            case .reap(let pid):
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                state.withLock { _ = $0.live.remove(pid) }
                let signal = status & 0x7f
                if signal != 0 && signal != SIGKILL {
                    logger.error("policy worker \(pid) ended by signal \(signal); starting another")
                } else if signal == 0 {
                    logger.error("policy worker \(pid) exited with status \(status >> 8 & 0xff); starting another")
                }
            case .start:
                if delay > 0, stopping.wait(timeout: .now() + delay) == .success { return }
                start()
            }
        }
    }

    /// Starts a worker and waits until it has loaded the policy.
    private func start() {
        do {
            let worker = try spawn()
            let (kept, first) = state.withLock {
                if !$0.stopped { $0.idle.append(worker) }
                return (!$0.stopped, $0.starting)
            }
            if kept { idleWorkers.signal() } else { close(worker.fd) }
            if first { firstWorkers.signal() }
        } catch {
            let message = "\(error)"
            let first = state.withLock {
                $0.failures += 1
                if $0.starting { $0.unloadable = $0.unloadable ?? message }
                return $0.starting
            }
            if first {
                firstWorkers.signal()
            } else {
                logger.error("policy worker: \(message); trying again")
                queue(.start)
            }
        }
    }

    /// Starts `settings.workerCommand` with one end of a new socket pair as its descriptor 3.
    private func spawn() throws -> Worker {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw UpdError.system("socketpair", "policy worker")
        }
        defer { close(ends[1]) }
        let channel = PolicyChannel(fd: ends[0])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto itself would keep close-on-exec: move the end off 3 first.
        let childEnd = ends[1] == 3 ? fcntl(3, F_DUPFD_CLOEXEC, 4) : ends[1]
        defer { if childEnd != ends[1] { close(childEnd) } }
        posix_spawn_file_actions_adddup2(&actions, childEnd, 3)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 2, 1)
        // The worker starts with no signal blocked or ignored, whatever the server's are.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var arguments = settings.workerCommand + ["--script", settings.script, "--server", String(getpid()),
                                                  "--instruction-limit", String(settings.instructionLimit ?? 0),
                                                  "--memory-limit", String(settings.memoryLimit ?? 0)]
        if let config = settings.configFile { arguments += ["--config", config] }
        let argv = arguments.map { strdup($0) } + [nil]
        // The server's environment, but a worker that crashes dies at once rather than run
        // Swift's backtracer for seconds (the server logs the signal).
        var envp = [UnsafeMutablePointer<CChar>?]()
        var entry = environ
        while let variable = entry.pointee {
            envp.append(strdup(variable))
            entry += 1
        }
        envp += [strdup("SWIFT_BACKTRACE=enable=no"), nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let error = posix_spawn(&pid, settings.workerCommand[0], &actions, &attributes, argv, envp)
        guard error == 0 else {
            channel.close()
            throw UpdError(.io, "cannot start \(settings.workerCommand[0]): \(String(cString: strerror(error)))")
        }
        state.withLock { _ = $0.live.insert(pid) }
        // Loading a policy is quick; a generous limit covers a busy machine starting a process.
        let deadline = DispatchTime.now() + max(10, settings.timeLimit)
        do {
            try channel.send([.string("policy"), .string(source)])
            while true {
                let message = try channel.receive(until: deadline)
                switch message[0].stringValue {
                case "ready": return Worker(pid: pid, fd: ends[0])
                case "log": log(message)
                case "unloadable": throw UpdError(.usage, message.count > 1 ? message[1].stringValue ?? "" : "the policy did not load")
                default: throw PolicyChannel.Closed(reason: "it sent an unexpected message")
                }
            }
        } catch {
            channel.close()
            kill(pid, SIGKILL)
            queue(.reap(pid), first: true)
            if error is PolicyChannel.TimedOut { throw UpdError(.usage, "\(settings.script): the policy did not load within \(Self.seconds(max(10, settings.timeLimit)))") }
            if let closed = error as? PolicyChannel.Closed { throw UpdError(.io, "the policy worker failed while loading the policy: \(closed.reason)") }
            throw error
        }
    }
}

