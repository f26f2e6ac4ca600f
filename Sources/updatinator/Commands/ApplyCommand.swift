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

    @Option(help: "The directory of trusted public keys that must have signed the target manifest.")
    var keyring: String?

    @Flag(help: "Continue an interrupted apply (apply always does; without one it starts afresh).")
    var resume = false

    @Flag(help: "Apply a manifest without checking its signature (for testing only).")
    var insecureSkipVerify = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    func execute() throws {
        if keyring == nil && !insecureSkipVerify {
            throw UpdError(.usage, "--keyring is required (or --insecure-skip-verify, for testing only)")
        }
        if move.blobs.isEmpty && mirrors.mirror.isEmpty {
            throw UpdError(.usage, "give --blobs DIR or --mirror URL (or both): where contents the tree lacks come from")
        }
        let target: (manifest: Manifest, bytes: [UInt8])
        let trusted = try keyring.map { try Keyring(directory: $0) }
        if insecureSkipVerify {
            target = try ManifestFile.read(move.to)
        } else {
            target = try ManifestFile.readVerified(move.to, keyring: trusted!)
        }
        let applier = InPlaceApplier(root: move.root, target: target.manifest, targetBytes: target.bytes)
        applier.blobDirectories = move.blobs
        if let from = move.from { applier.from = try ManifestFile.read(from) }
        if !mirrors.mirror.isEmpty {
            let fetcher = try mirrors.makeFetcher()
            applier.fetcher = fetcher
            applier.deltaIndex = MirrorOptions.deltaIndex(fetcher, for: target.manifest, keyring: trusted)
            applier.pack = fetcher.announcedPack(for: target.manifest, deltas: applier.deltaIndex)
        }
        let report = try applier.run()
        Console.endProgress()
        for problem in report.fallbacks { Console.error("warning: \(problem)") }
        let download = report.download
        let name = "\(target.manifest.image) \(target.manifest.version)"
        if json {
            try Console.writeJSON([
                "image": target.manifest.image, "version": target.manifest.version,
                "already_current": report.alreadyCurrent, "resumed": report.resumed,
                "bytes_written": report.bytesWritten, "bytes_reused": report.bytesReused,
                "planned_peak_extra_disk": report.plannedPeakExtraDisk,
                "observed_peak_extra_disk": report.observedPeakExtraDisk,
                "seconds": report.seconds, "operations": report.operations,
                "blobs_downloaded": download.blobs, "bytes_downloaded": download.bytes,
                "deltas": report.deltas, "fallbacks": report.fallbacks,
                "download_retries": download.retries, "download_failovers": download.failovers,
            ])
            return
        }
        if report.alreadyCurrent {
            Console.print("\(move.root) is already at \(name)")
            return
        }
        Console.print("\(move.root) is now at \(name)\(report.resumed ? " (resumed)" : ""): "
            + (mirrors.mirror.isEmpty ? "" : "downloaded \(download.blobs) blobs, \(formatBytes(download.bytes)); ")
            + "wrote \(formatBytes(report.bytesWritten)), "
            + "reused \(formatBytes(report.bytesReused)), \(String(format: "%.2f", report.seconds)) s, peak extra disk "
            + "\(formatBytes(report.observedPeakExtraDisk)) observed (\(formatBytes(report.plannedPeakExtraDisk)) planned)")
    }
}
