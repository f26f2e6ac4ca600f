import Foundation
import Testing
@testable import Updatinator

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

/// A subcommand as the root command's own configuration describes it, read from the built
/// binary (`--experimental-dump-help`), so that a list of commands in a test cannot drift.
struct CommandDescription: Sendable, CustomTestStringConvertible {
    /// An argument, option or flag that the command's help shows.
    struct Argument: Sendable {
        /// As help prints it: `--secret-key`, `-v`, or `<script>` for a positional argument.
        let name: String
        let abstract: String?
    }

    /// The words after `updatinator` that run it: `["apply"]`, `["fleet", "pause"]`.
    let path: [String]
    let abstract: String
    let arguments: [Argument]

    var name: String { path.last ?? "" }
    var testDescription: String { path.joined(separator: " ") }

    /// Every subcommand of `updatinator`, in the order its help lists them.
    static func all() throws -> [CommandDescription] {
        try tree().filter { $0.path.count == 1 }
    }

    /// Every command and every subcommand of a command (`fleet pause`), in help order.
    static func allNested() throws -> [CommandDescription] {
        try tree()
    }

    private static func tree() throws -> [CommandDescription] {
        let r = try CLI.run(["--experimental-dump-help"])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let root = json["command"] as? [String: Any], let subcommands = root["subcommands"] as? [[String: Any]] else {
            throw UpdError(.corrupt, "updatinator --experimental-dump-help gave no command tree: \(r.stderr)")
        }
        return describe(subcommands, under: [])
    }

    private static func describe(_ subcommands: [[String: Any]], under parent: [String]) -> [CommandDescription] {
        // `help` is the parser's own command, which the root help does not list.
        subcommands.filter { $0["shouldDisplay"] as? Bool != false && $0["commandName"] as? String != "help" }.flatMap { command in
            let path = parent + [command["commandName"] as? String ?? ""]
            let arguments = (command["arguments"] as? [[String: Any]] ?? []).filter { $0["shouldDisplay"] as? Bool != false }
            let this = CommandDescription(
                path: path,
                abstract: command["abstract"] as? String ?? "",
                arguments: arguments.map { argument in
                    let preferred = argument["preferredName"] as? [String: Any]
                    let name = preferred?["name"] as? String ?? argument["valueName"] as? String ?? "?"
                    let printed = switch (argument["kind"] as? String, preferred?["kind"] as? String) {
                    case ("positional", _): "<\(name)>"
                    case (_, "long"): "--\(name)"
                    default: "-\(name)"
                    }
                    return Argument(name: printed, abstract: argument["abstract"] as? String)
                })
            return [this] + describe(command["subcommands"] as? [[String: Any]] ?? [], under: path)
        }
    }
}
