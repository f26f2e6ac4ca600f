import Foundation
import Glibc
import Testing

/// A child process started with `posix_spawnp` and reaped with `waitpid`.
///
/// Its output goes to files rather than pipes, so a daemon it leaves behind (nginx) cannot hold
/// the test waiting for an end of file, and nothing depends on Foundation's process monitoring.
final class Subprocess {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private var status: Int32?

    /// The write end of the child's standard input, when it was started with `input: true`.
    let input: FileHandle?

    /// Starts `arguments[0]`, found on PATH, with `environment` added to the test's own; its
    /// standard input is /dev/null, or with `input` a pipe the test writes to.
    init(_ arguments: [String], environment: [String: String] = [:], input: Bool = false) throws {
        let base = "/tmp/updatinator-subprocess-\(getpid())-\(UUID().uuidString.prefix(8))"
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeEnds: [Int32] = [-1, -1]
        if input {
            guard pipe(&pipeEnds) == 0 else { throw POSIXError(.EMFILE) }
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[0], 0)
            posix_spawn_file_actions_addclose(&actions, pipeEnds[0])
            posix_spawn_file_actions_addclose(&actions, pipeEnds[1])
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // The child starts with no signal blocked or ignored, whatever this thread's mask is.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        // The CLI never signs with this host's own device key: each device id has its own (TestDevices).
        let environment = arguments.first == CLI.binary ? TestDevices.environment(arguments, environment) : environment
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let error = posix_spawnp(&child, arguments[0], &actions, &attributes, argv, envp)
        if input { close(pipeEnds[0]) }
        guard error == 0 else { throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EIO) }
        pid = child
        self.input = input ? FileHandle(fileDescriptor: pipeEnds[1], closeOnDealloc: true) : nil
    }

    deinit {
        if status == nil {
            kill(pid, SIGKILL)
            _ = wait()
        }
        unlink(stdoutPath)
        unlink(stderrPath)
    }

    /// Waits for the child to end; its exit status, or 128 + the signal that ended it.
    @discardableResult
    func wait() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        return ended(raw)
    }

    private func ended(_ raw: Int32) -> Int32 {
        let result = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        status = result
        return result
    }

    /// Waits until the standard output contains `text`, up to `seconds`; whether it did.
    func waitForOutput(_ text: String, seconds: Double = 30) -> Bool {
        eventually(within: seconds) { stdout.contains(text) }
    }

    /// Waits up to `seconds` for the child to end; whether it did.
    func waitForExit(seconds: Double) -> Bool {
        eventually(within: seconds) { !isRunning }
    }

    /// Waits until the child stopped itself (`UPDATINATOR_STOP_AFTER`) or ended, up to
    /// `seconds`; a child still running past that fails the test.
    func waitUntilStoppedOrEnded(seconds: Double = 120, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try waitUntil(timeout: seconds, "\(pid) stops itself or ends: \(stderr)", sourceLocation: sourceLocation) {
            !isRunning || isStopped
        }
    }

    /// Sends SIGTERM and waits.
    func stop() {
        if status == nil { kill(pid, SIGTERM) }
        wait()
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Whether the child is stopped (by SIGSTOP or itself).
    var isStopped: Bool {
        (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") T ") == true
    }

    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return true }
        _ = ended(raw)
        return false
    }
}
