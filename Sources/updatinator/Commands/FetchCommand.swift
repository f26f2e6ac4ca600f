import ArgumentParser
import Updatinator

struct FetchCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Downloads the blobs a target image needs into a local cache.",
        discussion: """
            Downloads into the cache directory (blob layout, DIR/<hh>/<hash>) exactly the blobs of \
            the target that neither the current tree (its --from manifest, or the installed \
            manifest of --root) nor the cache already has, each verified by its hash. The cache \
            can then be given to apply with --blobs.
            """)

    @Option(help: "The manifest to fetch for.")
    var to: String

    @OptionGroup var mirrors: MirrorOptions

    @Option(help: "The directory to download blobs into.")
    var cache: String

    @Option(help: "The manifest the tree matches now; its contents are not downloaded.")
    var from: String?

    @Option(help: "The tree; its installed manifest is used when --from is not given.")
    var root: String?

    @Flag(help: "Print the report as JSON.")
    var json = false

    func execute() throws {
        let target = try ManifestFile.read(to).manifest
        var present: Manifest? = nil
        if let from {
            present = try ManifestFile.read(from).manifest
        } else if let root {
            present = try StateDirectory(root: root).readInstalled().manifest
        }
        let store = BlobStore(directory: cache)
        let requests = try BlobFetchPlan.missing(target: target, present: present, stores: [store])
        let report = try mirrors.makeFetcher().fetch(requests, into: store)
        Console.endProgress()
        if json {
            return try Console.writeJSON(["cache": cache, "blobs": report.blobs, "bytes": report.bytes, "retries": report.retries,
                                          "failovers": report.failovers, "seconds": report.seconds])
        }
        Console.print("fetched \(report.blobs) blobs, \(formatBytes(report.bytes)) (\(report.bytes) bytes) in "
            + String(format: "%.2f s", report.seconds) + " into \(cache)"
            + (report.retries + report.failovers > 0 ? "; \(report.retries) retries, \(report.failovers) failovers" : ""))
    }
}
