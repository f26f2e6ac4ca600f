import ArgumentParser
import Foundation
import Updatinator

struct ApplyCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Moves a tree to another image in place, from local blob directories or mirrors.",
        discussion: """
            Verifies the target manifest against the keyring, plans the move, refuses before \
            changing anything when the filesystem lacks the space the plan needs, and then \
            transforms the tree where it stands. Progress is journaled in ROOT/.updatinator: \
            after a crash or power cut, running the same command again (or with --resume) \
            completes the move. The installed manifest changes only when the tree matches the \
            target. Blob directories are only read. Contents that neither the tree nor a blob \
            directory has are downloaded from the mirrors as the apply goes, each verified, used \
            and deleted at once: at most 32 MiB of blobs wait on disk, or one blob at a time \
            when the filesystem is short of space, and the free-space check counts them.
            """)

    @OptionGroup var move: MoveOptions

    @OptionGroup var mirrors: MirrorOptions

    @Option(help: "The directory of trusted public keys that must have signed the target manifest (and the mirrors' delta index).")
    var keyring = DefaultPaths.keyring

    @Flag(help: "Continue an interrupted apply (apply always does; without one it starts afresh).")
    var resume = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    func execute() throws {
        if move.blobs.isEmpty && mirrors.mirror.isEmpty {
            throw UpdError(.usage, "give --blobs DIR or --mirror URL (or both): where contents the tree lacks come from")
        }
        let trusted = try Keyring(directory: keyring)
        let target = try trusted.verifiedManifest(at: move.to)
        let request = UpdateEngine.ApplyRequest(
            root: move.root, target: target, from: try move.from.map { try ManifestParser.parse(contentsOf: $0, sharingPathsWith: target.manifest) },
            sources: ContentSources(blobDirectories: move.blobs, mirrors: mirrors.fetchOptions, deltaKeyring: trusted),
            faults: Environment.faults, machine: try move.machine)
        let report = try UpdateEngine.apply(request, observer: MirrorOptions.observer("applying"))
        Console.endProgress()
        for problem in report.fallbacks { Console.warning(problem) }
        for path in report.etcConflicts {
            Console.warning("\(path): changed on this machine and in \(target.name); the machine's version is kept, the image's is beside it as \(path).updatinator-new")
        }
        if json {
            try Console.writeJSON(report)
        } else if report.alreadyCurrent {
            Console.print("\(move.root) is already at \(target.name)")
        }
        // Already there is "nothing to do", as for upgrade and deploy.
        if report.alreadyCurrent { throw ExitCode(UpdError.Code.nothingToDo.exitStatus) }
        if json { return }
        let download = report.download
        let how = report.resumed ? " (resumed)" : report.superseded.map { " (taking over from an unfinished apply to \($0.prefix(16))…)" } ?? ""
        Console.print("\(move.root) is now at \(target.name)\(how): "
            + (mirrors.mirror.isEmpty ? "" : "downloaded \(download.blobs) blobs, \(formatBytes(download.bytes)); ")
            + "wrote \(formatBytes(report.bytesWritten)), "
            + "reused \(formatBytes(report.bytesReused)), \(String(format: "%.2f", report.seconds)) s, peak extra disk "
            + "\(formatBytes(report.observedPeakExtraDisk)) observed (\(formatBytes(report.plannedPeakExtraDisk)) planned)")
    }
}
