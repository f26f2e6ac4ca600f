import Foundation

/// Runs the built `updatinator` binary, as a user would.
enum CLI {
    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static var binary: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("updatinator").path
    }

    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let child = try Subprocess([binary] + arguments, environment: environment)
        let status = child.wait()
        return Result(status: status, stdout: child.stdout, stderr: child.stderr)
    }
}
