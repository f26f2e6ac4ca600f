import ArgumentParser
import Foundation
import UpdatinatorServer

/// A school server's policy worker (hidden): `serve` starts these itself, each with its end
/// of a socket pair as descriptor 3 (see PolicyWorker).
struct PolicyWorkerCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "policy-worker",
        abstract: "Runs the server policy for 'updatinator serve' (started by serve, not by hand).",
        shouldDisplay: false)

    @Option var script: String
    @Option var config: String?
    @Option var instructionLimit: Int
    @Option var memoryLimit: Int
    @Option var server: Int32

    func execute() throws {
        var settings = PolicyPool.Settings(script: script, configFile: config, workerCommand: [])
        settings.instructionLimit = instructionLimit > 0 ? instructionLimit : nil
        settings.memoryLimit = memoryLimit > 0 ? memoryLimit : nil
        throw ExitCode(PolicyWorker.serve(socket: 3, settings: settings, server: server))
    }
}
