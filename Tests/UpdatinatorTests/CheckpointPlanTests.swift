import Testing
@testable import Updatinator

/// Where the planner puts checkpoints among the writes: each flushes the whole filesystem, so
/// they come rarely, except while a preserved content waits for one to be released.
@Suite struct CheckpointPlanTests {
    let meta = Metadata(mode: 0o644, uid: 0, gid: 0, mtime: Timestamp(seconds: 1_600_000_000, nanoseconds: 0))
    let size: UInt64 = 5 << 20

    func file(_ path: String, _ content: UInt8) throws -> ManifestEntry {
        ManifestEntry(path: try ManifestPath(path), kind: .file(size: size, hash: ContentHash(bytes: [UInt8](repeating: content, count: 32))!,
                                                               blobSize: size / 2), metadata: meta)
    }

    func image(_ version: String, _ files: [ManifestEntry]) throws -> Manifest {
        Manifest(image: "i", version: version, entries: [ManifestEntry(path: .root, kind: .directory, metadata: meta)] + files.sorted { $0.path < $1.path })
    }

    /// The bytes written between each two checkpoints (where any are).
    func phases(_ plan: ApplyPlan) -> [UInt64] {
        var written: [UInt64] = [0]
        for step in plan.steps {
            if case .writeFile(let e) = step, case .file(let size, _, _) = e.kind { written[written.count - 1] += size }
            if case .checkpoint = step { written.append(0) }
        }
        return written.filter { $0 > 0 }
    }

    @Test("new contents alone are written up to 64 MiB between checkpoints")
    func newContentsCheckpointEvery64MiB() throws {
        let old = try image("1", (0..<10).map { try file("/old\($0)", UInt8($0)) })
        let new = try image("2", (0..<30).map { try file("/new\($0)", UInt8(100 + $0)) })
        let written = phases(try Planner(from: old, to: new).plan())
        // 150 MiB in files of 5 MiB: a checkpoint once 64 MiB are past, so after 65 MiB twice.
        #expect(written == [65 << 20, 65 << 20, 20 << 20])
        #expect(Planner.checkpointBytes == 64 << 20)
    }

    @Test("while a preserved content waits to be released, a checkpoint comes once 8 MiB are written or held")
    func preservedContentsAreReleasedAfter8MiB() throws {
        let old = try image("1", (0..<10).map { try file("/old\($0)", UInt8($0)) })
        // Each old content moves to another path (preserved, then released after its write),
        // then 20 new contents follow.
        let new = try image("2", (0..<10).map { try file("/moved\($0)", UInt8($0)) } + (0..<20).map { try file("/new\($0)", UInt8(100 + $0)) })
        let plan = try Planner(from: old, to: new).plan()
        #expect(plan.steps.filter { if case .preserve = $0 { true } else { false } }.count == 10)
        let phases = phases(plan)
        // A copy writes 5 MiB and holds 5 MiB for release: a checkpoint after each, which releases it.
        #expect(phases.prefix(10) == [UInt64](repeating: 5 << 20, count: 10)[...])
        #expect(plan.steps.split(separator: .checkpoint).filter { $0.contains { if case .release = $0 { true } else { false } } }.count == 10)
        // Then the new contents, 64 MiB at a time.
        #expect(Array(phases.dropFirst(10)) == [65 << 20, 35 << 20])
    }
}
