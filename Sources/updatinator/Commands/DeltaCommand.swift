import ArgumentParser
import Updatinator

struct DeltaCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "delta",
        abstract: "Writes the content-pair deltas for a move between two image versions of a repository.",
        discussion: """
            For each content of the target version that the source version lacks, finds a base \
            in the source (the same path; else the same path or name once version numbers are \
            stripped: see docs/deltas.md) and writes REPO/deltas/<hh>/<base>-<target>, the target \
            encoded against the base with zstd's prefix mode. Deltas that exist are kept; a delta \
            not smaller than the target's blob is not written. The target version's index, \
            images/IMAGE/VERSION.deltas, gains the deltas and is signed. Every image move that \
            contains one of these file transitions can use its delta, in either direction only \
            as made: make the reverse move's deltas with --from and --to swapped.
            """)

    @Option(help: "The repository.")
    var repo: String

    @Option(help: "The source image version, as IMAGE/VERSION.")
    var from: String

    @Option(help: "The target image version, as IMAGE/VERSION.")
    var to: String

    @Option(help: "The secret key that signs the target version's delta index.")
    var secretKey: String

    @Option(help: "Deltas computed at once (default: one per core).")
    var jobs: Int?

    @Option(help: "The zstd compression level, 1 to 22.")
    var level: Int32 = ContentDelta.defaultLevel

    func execute() throws {
        guard (1...22).contains(level) else { throw UpdError(.usage, "--level must be between 1 and 22") }
        if let jobs, jobs < 1 { throw UpdError(.usage, "--jobs must be at least 1") }
        let repository = try Repository(opening: repo)
        let key = try KeyFile.readSecret(secretKey)
        let source = try Self.manifest(from, in: repository), target = try Self.manifest(to, in: repository)
        var builder = DeltaBuilder(repository: repository)
        builder.level = level
        if let jobs { builder.jobs = jobs }
        let r = try builder.build(from: source, to: target, key: key)
        let rules = DeltaBases.Rule.allCases.map { "\(r.byRule[$0.rawValue] ?? 0) by \($0.rawValue)" }.joined(separator: ", ")
        Console.print("\(from) → \(to): wrote \(r.made) deltas (\(formatBytes(r.madeBytes))), kept \(r.existing), "
            + "\(r.alone) of them against no base; \(r.notSmaller) new contents with no delta smaller than their blob; "
            + "bases: \(rules); \(r.unmatched) new contents without a base")
    }

    static func manifest(_ name: String, in repository: Repository) throws -> Manifest {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 else { throw UpdError(.usage, "'\(name)': expected IMAGE/VERSION") }
        try Manifest.checkName(parts[0], what: "image name")
        try Manifest.checkName(parts[1], what: "version")
        return try ManifestFile.read(repository.manifestPath(image: parts[0], version: parts[1])).manifest
    }
}
