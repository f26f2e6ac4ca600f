import ArgumentParser
import Foundation
import Updatinator

/// The sysroot every deployment command acts on.
struct SysrootOption: ParsableArguments {
    @Option(help: "The directory of deployments (DIR/deployments, DIR/current, DIR/previous).")
    var sysroot = DefaultPaths.sysroot
}

struct DeployCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Builds a manifest's image beside the current deployment and switches to it.",
        discussion: """
            Verifies the manifest against the keyring, then builds DIR/deployments/IMAGE-VERSION-HASH: \
            files whose content and metadata are unchanged are hardlinks to the current deployment, \
            any other file gets its own inode, and contents the sysroot lacks are downloaded from the \
            mirrors as the build goes (or read from --blobs). Once the new tree verifies, DIR/current \
            is switched to it atomically and the old one becomes DIR/previous; the new deployment is \
            pending until mark-good. A crash leaves DIR/current on a complete deployment; running the \
            command again removes the half-built one and builds it again.
            """)

    @OptionGroup var root: SysrootOption

    @Option(help: "The manifest to deploy.")
    var to: String

    @Option(help: "The directory of trusted public keys that must have signed the manifest.")
    var keyring = DefaultPaths.keyring

    @Option(help: "A blob directory (repository layout) to read contents from; repeatable.")
    var blobs: [String] = []

    @OptionGroup var mirrors: MirrorOptions

    @Flag(help: "Print the report as JSON.")
    var json = false

    func execute() throws {
        let trusted = try Keyring(directory: keyring)
        let request = UpdateEngine.DeployRequest(
            sysroot: root.sysroot, target: try trusted.verifiedManifest(at: to),
            sources: ContentSources(blobDirectories: blobs, mirrors: mirrors.fetchOptions, deltaKeyring: trusted),
            faults: Environment.faults)
        let report = try UpdateEngine.deploy(request, observer: MirrorOptions.observer)
        Console.endProgress()
        for problem in report.fallbacks { Console.warning(problem) }
        for path in report.etcConflicts {
            Console.warning("\(path): changed on this machine and in the new image; kept this machine's, the image's is \(path).updatinator-new")
        }
        if json {
            try Console.writeJSON(report)
        } else if report.alreadyCurrent {
            Console.print("\(report.name) is already the current deployment")
        }
        if report.alreadyCurrent { throw ExitCode(UpdError.Code.nothingToDo.exitStatus) }
        if json { return }
        Console.print("\(root.sysroot)/current is now \(report.name) (pending until mark-good): "
            + "linked \(report.filesLinked) files (\(formatBytes(report.bytesLinked))), wrote \(report.filesWritten) "
            + "(\(formatBytes(report.bytesWritten))), downloaded \(report.download.blobs) blobs and deltas (\(report.deltas) deltas) "
            + "(\(formatBytes(report.download.bytes))), "
            + String(format: "%.2f s", report.seconds))
    }
}

struct RollbackCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Switches back to the previous deployment.",
        discussion: "DIR/current and DIR/previous swap, each by an atomic rename. Exit status 10 when there is no previous deployment.")

    @OptionGroup var root: SysrootOption

    @Flag(help: "Print the result as JSON.")
    var json = false

    func execute() throws {
        let (from, to) = try Sysroot(path: root.sysroot).rollback()
        if json { return try Console.writeJSON(["current": to, "previous": from]) }
        Console.print("\(root.sysroot)/current is now \(to) (was \(from))")
    }
}

struct StatusCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Shows the deployments of a sysroot and their disk use.",
        discussion: """
            Lists each deployment, newest first, with its image and version, whether it is current, \
            previous or pending (with its boot tries), and its disk use: bytes of files it alone \
            holds, and bytes of files whose inodes it shares with another deployment.
            """)

    @OptionGroup var root: SysrootOption

    @Flag(help: "Print the status as JSON.")
    var json = false

    func execute() throws {
        let (deployments, boot) = try Sysroot(path: root.sysroot, reading: true).status()
        if json {
            try Console.writeJSON([
                "pending": boot.pending ?? NSNull(), "tries": boot.tries, "rolled_back": boot.rolledBack ?? NSNull(),
                "deployments": deployments.map { d in
                    ["name": d.name, "image": d.image, "version": d.version, "current": d.isCurrent, "previous": d.isPrevious,
                     "pending": d.isPending, "own_bytes": d.ownBytes, "shared_bytes": d.sharedBytes] as [String: Any]
                },
            ])
            return
        }
        if deployments.isEmpty { Console.print("\(root.sysroot): no deployments") }
        for d in deployments {
            let roles = [d.isCurrent ? "current" : nil, d.isPrevious ? "previous" : nil,
                         d.isPending ? "pending, boot \(boot.tries)" : nil].compactMap { $0 }
            Console.print("\(d.name)\(roles.isEmpty ? "" : " (" + roles.joined(separator: ", ") + ")"): \(d.image) \(d.version), "
                + "own \(formatBytes(d.ownBytes)), shared \(formatBytes(d.sharedBytes))")
        }
        if let rolledBack = boot.rolledBack { Console.print("rolled back from \(rolledBack), which was never marked good") }
    }
}

struct GCCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Removes old deployments and cached blobs nothing uses.",
        discussion: """
            Keeps the current, previous and pending deployments and the newest others up to --keep \
            in all; removes the rest, and the blobs of DIR/blobs that no kept deployment's manifest uses.
            """)

    @OptionGroup var root: SysrootOption

    @Option(help: "How many deployments to keep (the current, previous and pending ones always stay).")
    var keep = 2

    @Flag(help: "Print the result as JSON.")
    var json = false

    func execute() throws {
        let collected = try Sysroot(path: root.sysroot).collectGarbage(keep: keep)
        if json {
            return try Console.writeJSON(["removed_deployments": collected.deployments, "removed_blobs": collected.blobs,
                                          "removed_blob_bytes": collected.blobBytes])
        }
        Console.print("removed \(collected.deployments.count) deployments"
            + (collected.deployments.isEmpty ? "" : " (" + collected.deployments.joined(separator: ", ") + ")")
            + " and \(collected.blobs) cached blobs (\(formatBytes(collected.blobBytes)))")
    }
}

struct MarkGoodCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "mark-good",
        abstract: "Marks the current deployment good, so that the boot counter keeps it.",
        discussion: "Run by a health check once the system has booted and works.")

    @OptionGroup var root: SysrootOption

    func execute() throws {
        if let name = try Sysroot(path: root.sysroot).markGood() {
            Console.print("\(name) is marked good")
        } else {
            Console.print("the current deployment is not pending")
        }
    }
}
