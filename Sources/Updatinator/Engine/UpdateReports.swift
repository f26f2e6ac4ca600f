/// What an in-place apply did, as `apply --json` prints it and `upd.apply` returns it.
public struct ApplyReport: Sendable, Encodable, DownloadFigures {
    public var image = ""
    public var version = ""
    public var alreadyCurrent = false
    public var resumed = false
    /// The hash of the manifest an apply in progress was moving to when this one, to another,
    /// took over from it, starting from the tree as that apply left it.
    public var superseded: String?
    public var bytesWritten: UInt64 = 0
    public var bytesReused: UInt64 = 0
    public var plannedPeakExtraDisk: UInt64 = 0
    /// The largest excess of allocated bytes over the larger tree seen during this run.
    public var observedPeakExtraDisk: UInt64 = 0
    public var seconds: Double = 0
    /// Filesystem operations this run made (the unit of `FaultInjection`).
    public var operations = 0
    /// What this run downloaded.
    public var blobsDownloaded = 0, downloadRetries = 0, downloadFailovers = 0
    public var bytesDownloaded: UInt64 = 0
    /// Seconds from the start of this run until the first content it downloaded was in the
    /// tree (how long a batch, a delta or a blob kept it waiting); nil when it downloaded none.
    public var firstDownloadSeconds: Double?
    /// Contents planned to come as deltas.
    public var deltas = 0
    /// Downloads that came another way than planned (a delta as its blob, a refused batch or an
    /// unusable pack blob by blob), and why.
    public var fallbacks = [String]()
    /// With `/etc` merged (`MachinePaths.mergesEtc`): paths where the machine's version was
    /// kept, and those of them the new image changed too (its version is beside them as
    /// NAME.updatinator-new). Known to the run that planned the apply, not to a resumed one.
    public var etcKept = [String]()
    public var etcConflicts = [String]()

    enum CodingKeys: String, CodingKey {
        case etcKept = "etc_kept", etcConflicts = "etc_conflicts"
        case image, version, alreadyCurrent = "already_current", resumed, superseded, bytesWritten = "bytes_written"
        case bytesReused = "bytes_reused", plannedPeakExtraDisk = "planned_peak_extra_disk"
        case observedPeakExtraDisk = "observed_peak_extra_disk", seconds, operations, deltas, fallbacks
        case blobsDownloaded = "blobs_downloaded", bytesDownloaded = "bytes_downloaded"
        case downloadRetries = "download_retries", downloadFailovers = "download_failovers"
        case firstDownloadSeconds = "first_download_seconds"
    }
}

/// What a staged deployment did, as `deploy --json` prints it and `upd.deploy` returns it.
public struct DeployReport: Sendable, Encodable, DownloadFigures {
    /// The deployment's name (image-version-hash).
    public var name = ""
    /// The deployment was current already: nothing changed.
    public var alreadyCurrent = false
    public var filesLinked = 0
    public var bytesLinked: UInt64 = 0
    public var filesWritten = 0
    public var bytesWritten: UInt64 = 0
    public var blobsDownloaded = 0, downloadRetries = 0, downloadFailovers = 0
    public var bytesDownloaded: UInt64 = 0
    /// Contents downloaded as deltas, and those that came as their full blob instead (and why).
    public var deltas = 0
    public var fallbacks = [String]()
    /// Paths of /etc where the machine's version was carried into the deployment, and those of
    /// them the new image changed too (its version is beside them as NAME.updatinator-new).
    public var etcKept = [String]()
    public var etcConflicts = [String]()
    /// The deployment has a kernel, and a boot entry was written for it.
    public var bootEntry = false
    public var seconds = 0.0

    enum CodingKeys: String, CodingKey {
        case etcKept = "etc_kept", etcConflicts = "etc_conflicts", bootEntry = "boot_entry"
        case name, alreadyCurrent = "already_current", filesLinked = "files_linked", bytesLinked = "bytes_linked"
        case filesWritten = "files_written", bytesWritten = "bytes_written", deltas, fallbacks, seconds
        case blobsDownloaded = "blobs_downloaded", bytesDownloaded = "bytes_downloaded"
        case downloadRetries = "download_retries", downloadFailovers = "download_failovers"
    }
}

/// What moving a tree to another image would cost, as `plan --json` prints it and `upd.plan`'s
/// Plan object shows it.
public struct PlanSummary: Sendable, Encodable {
    public struct Image: Sendable, Encodable {
        public let image: String
        public let version: String
    }

    public struct Changes: Sendable, Encodable {
        public let created, replaced, removed, reowned, remoded, retimed: Int
        public let xattrsChanged: Int

        enum CodingKeys: String, CodingKey {
            case created, replaced, removed, reowned, remoded, retimed, xattrsChanged = "xattrs_changed"
        }
    }

    public let from: Image
    public let to: Image
    /// Contents neither the tree nor a blob directory has, and their compressed bytes (as deltas
    /// where the plan chose them).
    public let contentsToObtain: Int
    public let downloadBytes: UInt64
    public let deltas: Int
    public let deltaSavedBytes: UInt64
    /// Contents read from local blob directories.
    public let contentsFromBlobs: Int
    public let blobDirectoryBytes: UInt64
    public let reusedBytes: UInt64
    public let writeBytes: UInt64
    /// The exact peak of extra disk space the apply uses, and the free space it requires.
    public let peakDiskBytes: UInt64
    public let requiredFreeBytes: UInt64
    public let steps: Int
    public let changes: Changes

    /// The names of the fields, as `--json` and a Lua Plan show them.
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.rawValue) }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case from, to, contentsToObtain = "contents_to_obtain", downloadBytes = "download_bytes", deltas
        case deltaSavedBytes = "delta_saved_bytes", contentsFromBlobs = "contents_from_blobs"
        case blobDirectoryBytes = "blob_directory_bytes", reusedBytes = "reused_bytes", writeBytes = "write_bytes"
        case peakDiskBytes = "peak_disk_bytes", requiredFreeBytes = "required_free_bytes", steps, changes
    }

    public init(_ plan: ApplyPlan) {
        from = Image(image: plan.from.image, version: plan.from.version)
        to = Image(image: plan.to.image, version: plan.to.version)
        contentsToObtain = plan.contentsToObtain
        downloadBytes = plan.bytesToObtain
        deltas = plan.deltas.count
        deltaSavedBytes = plan.bytesSavedByDeltas
        contentsFromBlobs = plan.contentsFromBlobs
        blobDirectoryBytes = plan.bytesFromBlobs
        reusedBytes = plan.bytesReused
        writeBytes = plan.bytesToWrite
        peakDiskBytes = plan.peakExtraDisk
        requiredFreeBytes = plan.requiredFreeSpace
        steps = plan.steps.count
        let c = plan.changes
        changes = Changes(created: c.created, replaced: c.replaced, removed: c.removed, reowned: c.reowned,
                          remoded: c.remoded, retimed: c.retimed, xattrsChanged: c.xattrsChanged)
    }
}

/// A report's download figures, kept as fields of its own so that they encode beside the others.
public protocol DownloadFigures {
    var blobsDownloaded: Int { get set }
    var bytesDownloaded: UInt64 { get set }
    var downloadRetries: Int { get set }
    var downloadFailovers: Int { get set }
    /// Contents that came another way than planned (a delta's full blob; a download instead of a changed local copy), and why.
    var fallbacks: [String] { get set }
}

extension DownloadFigures {
    /// Counts a content downloaded on its own after all (`ContentChain`), with why.
    mutating func addFallback(_ why: String, _ fetched: FetchReport) {
        fallbacks.append(why)
        (blobsDownloaded, bytesDownloaded) = (blobsDownloaded + fetched.blobs, bytesDownloaded + fetched.bytes)
        (downloadRetries, downloadFailovers) = (downloadRetries + fetched.retries, downloadFailovers + fetched.failovers)
    }

    /// The download's figures, as the fetcher reports them.
    public var download: FetchReport {
        get { FetchReport(blobsDownloaded, bytesDownloaded, downloadRetries, downloadFailovers) }
        set { (blobsDownloaded, bytesDownloaded, downloadRetries, downloadFailovers) = (newValue.blobs, newValue.bytes, newValue.retries, newValue.failovers) }
    }
}

extension FetchReport {
    /// A report's download figures (without their time, which the operation's own time includes).
    init(_ blobs: Int, _ bytes: UInt64, _ retries: Int, _ failovers: Int) {
        self.init()
        (self.blobs, self.bytes, self.retries, self.failovers) = (blobs, bytes, retries, failovers)
    }
}
