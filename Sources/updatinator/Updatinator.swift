import ArgumentParser
import CLinux
import Foundation
import Logging
import Updatinator

@main
struct UpdatinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "updatinator",
        abstract: "Moves machines between whole OS images, safely and cheaply.",
        discussion: """
            A build server turns image trees into signed manifests and content-addressed blobs \
            with 'generate', 'sign' and 'publish'. Exit codes are the same for every command \
            and are listed in docs/cli.md.
            """,
        version: UpdatinatorVersion.current,
        subcommands: [
            KeygenCommand.self, GenerateCommand.self, SignCommand.self, VerifyCommand.self,
            DiffCommand.self, FsckCommand.self, PublishCommand.self, DeltaCommand.self, PackCommand.self, AdoptCommand.self, PlanCommand.self, ApplyCommand.self, GetManifestCommand.self, FetchCommand.self,
            RunCommand.self, ReplCommand.self, AgentCommand.self, ServeCommand.self, UpgradeCommand.self,
            DeployCommand.self, RollbackCommand.self, StatusCommand.self, GCCommand.self, MarkGoodCommand.self, FleetCommand.self,
            PolicyWorkerCommand.self,
        ])

    /// Parses and runs a command; under `--json`, a command line that does not parse is a JSON
    /// error too (code `usage`), like every other failure. On the journal, the servers' log
    /// lines carry their priority like the rest.
    static func main() {
        // glibc raises its mmap threshold to the size of each large block freed; blocks of that
        // size (a manifest's text, a content) then come from the heap and stay resident when
        // freed. With a fixed threshold they go back to the system: an apply of a 100,000-file
        // image peaks about 17 MiB lower (4 MiB would keep generate's contents resident: 12 MiB
        // more). Fixing it also fixes the heap's trim threshold, set to 32 MiB here: at glibc's
        // 128 KiB, the heap shrank and grew again around every content (apply 3 % slower).
        _ = mallopt(M_MMAP_THRESHOLD, 1 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 32 << 20)
        if Console.isJournal { LoggingSystem.bootstrap { JournalLogHandler(label: $0) } }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let status = exitCode(for: error)
            // A command's own failures (ExitCode) have been reported by its run wrapper.
            let options = CommandLine.arguments.dropFirst().prefix { $0 != "--" }
            if status == .validationFailure, !(error is ExitCode), options.contains("--json") {
                Console.writeJSONError(code: UpdError.Code.usage.rawValue, status: status.rawValue,
                                       message: message(for: error).split(separator: "\n").first.map(String.init) ?? "")
                Foundation.exit(status.rawValue)
            }
            exit(withError: error)
        }
    }
}
