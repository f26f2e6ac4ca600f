import ArgumentParser
import Updatinator

struct PlanCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Shows what moving a tree to another image would cost, without changing anything.",
        discussion: """
            Prints the contents to obtain (count and compressed bytes), the bytes reused from \
            the tree, the bytes to write, the exact peak extra disk space the apply needs, and \
            the changes by kind. The tree's installed manifest is the starting point unless \
            --from names another (needed for a tree that was only generated, never applied). \
            With --mirror, the contents to obtain are counted as downloads during the apply, and \
            the disk figures include the blobs waiting on disk; the mirrors' delta index for the \
            target is read (verified with --keyring when given), and each content comes as its \
            cheapest delta against a content of the tree when that is smaller than its blob.
            """)

    @OptionGroup var move: MoveOptions

    @Option(help: "A mirror the apply will download from; repeatable.")
    var mirror: [String] = []

    @Option(help: "The directory of trusted public keys that must have signed the mirrors' delta index.")
    var keyring: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func execute() throws {
        let target = try ManifestFile.read(move.to)
        let origin = try ManifestFile.read(move.from ?? StateDirectory(root: move.root).installedManifest)
        let deltas = try mirror.isEmpty ? nil : MirrorOptions.deltaIndex(CurlFetcher(options: FetchOptions(mirrors: mirror)),
                                                                         for: target.manifest, keyring: keyring.map { try Keyring(directory: $0) })
        let plan = try InPlaceApplier.plan(root: move.root, from: origin.manifest, fromBytes: origin.bytes.count,
                                           to: target.manifest, toBytes: target.bytes.count, blobDirectories: move.blobs,
                                           downloadWindow: mirror.isEmpty ? nil : InPlaceApplier.defaultDownloadWindow,
                                           deltaIndex: deltas)
        let c = plan.changes
        if json {
            try Console.writeJSON([
                "from": ["image": plan.from.image, "version": plan.from.version],
                "to": ["image": plan.to.image, "version": plan.to.version],
                "contents_to_obtain": plan.contentsToObtain, "bytes_to_obtain": plan.bytesToObtain,
                "deltas": plan.deltas.count, "bytes_saved_by_deltas": plan.bytesSavedByDeltas,
                "contents_from_blobs": plan.contentsFromBlobs, "bytes_from_blobs": plan.bytesFromBlobs,
                "bytes_reused": plan.bytesReused, "bytes_to_write": plan.bytesToWrite,
                "peak_extra_disk": plan.peakExtraDisk, "required_free_space": plan.requiredFreeSpace,
                "steps": plan.steps.count,
                "changes": ["created": c.created, "replaced": c.replaced, "removed": c.removed, "reowned": c.reowned,
                            "remoded": c.remoded, "retimed": c.retimed, "xattrs_changed": c.xattrsChanged],
            ])
            return
        }
        Console.print("\(plan.from.image) \(plan.from.version) → \(plan.to.image) \(plan.to.version)")
        Console.print("  to \(mirror.isEmpty ? "obtain:  " : "download:") \(plan.contentsToObtain) contents, \(formatBytes(plan.bytesToObtain)) compressed")
        if !plan.deltas.isEmpty {
            Console.print("  as deltas:   \(plan.deltas.count) of them, saving \(formatBytes(plan.bytesSavedByDeltas)) against their blobs")
        }
        Console.print("  from blobs:  \(plan.contentsFromBlobs) contents, \(formatBytes(plan.bytesFromBlobs))")
        Console.print("  reused:      \(formatBytes(plan.bytesReused)) from the tree")
        Console.print("  to write:    \(formatBytes(plan.bytesToWrite))")
        Console.print("  peak extra disk: \(formatBytes(plan.peakExtraDisk)) (\(plan.peakExtraDisk) bytes); free space needed: \(formatBytes(plan.requiredFreeSpace))")
        Console.print("  changes: \(c.created) created, \(c.replaced) replaced, \(c.removed) removed, \(c.reowned) re-owned, "
            + "\(c.remoded) re-moded, \(c.retimed) re-timed, \(c.xattrsChanged) with other extended attributes")
    }
}
