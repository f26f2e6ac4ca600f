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
            the disk figures include the blobs waiting on disk, and the mirrors' delta index for \
            the target is read and verified against the keyring, and each content comes as its \
            cheapest delta against a content of the tree when that is smaller than its blob, as \
            apply does (an apply uses no delta index that no keyring verified).
            """)

    @OptionGroup var move: MoveOptions

    @Option(help: "A mirror the apply will download from; repeatable.")
    var mirror: [String] = []

    @Option(help: "The directory of trusted public keys that must have signed the mirrors' delta index (read only with --mirror).")
    var keyring = DefaultPaths.keyring

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @OptionGroup var tls: TLSOptions

    func execute() throws {
        let target = try ManifestFile.read(move.to)
        let origin = try move.from.map { try ManifestFile.read($0) } ?? StateDirectory(root: move.root).readInstalled()
        var mirrors: FetchOptions? = mirror.isEmpty ? nil : FetchOptions(mirrors: mirror)
        mirrors?.caFile = tls.caFile
        let sources = ContentSources(blobDirectories: move.blobs, mirrors: mirrors, deltaKeyring: mirror.isEmpty ? nil : try Keyring(directory: keyring))
        let plan = PlanSummary(try UpdateEngine.plan(root: move.root, from: origin, to: target, sources: sources,
                                                     machine: try move.machine, observer: UpdateObserver(warn: { Console.warning($0) })))
        if json { return try Console.writeJSON(plan) }
        let c = plan.changes
        Console.print("\(plan.from.image) \(plan.from.version) → \(plan.to.image) \(plan.to.version)")
        Console.print("  to \(mirror.isEmpty ? "obtain:  " : "download:") \(plan.contentsToObtain) contents, \(formatBytes(plan.downloadBytes)) compressed")
        if plan.deltas > 0 {
            Console.print("  as deltas:   \(plan.deltas) of them, saving \(formatBytes(plan.deltaSavedBytes)) against their blobs")
        }
        Console.print("  from blobs:  \(plan.contentsFromBlobs) contents, \(formatBytes(plan.blobDirectoryBytes))")
        Console.print("  reused:      \(formatBytes(plan.reusedBytes)) from the tree")
        Console.print("  to write:    \(formatBytes(plan.writeBytes))")
        Console.print("  peak extra disk: \(formatBytes(plan.peakDiskBytes)) (\(plan.peakDiskBytes) bytes); free space needed: \(formatBytes(plan.requiredFreeBytes))")
        Console.print("  changes: \(c.created) created, \(c.replaced) replaced, \(c.removed) removed, \(c.reowned) re-owned, "
            + "\(c.remoded) re-moded, \(c.retimed) re-timed, \(c.xattrsChanged) with other extended attributes")
    }
}
