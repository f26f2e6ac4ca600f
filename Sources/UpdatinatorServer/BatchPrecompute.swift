import Foundation
import Logging
import Updatinator

/// Computes the batches of the moves a school's devices are about to make before they ask for
/// them, so that the usual first device of a move finds them ready instead of waiting minutes
/// for a level-19 compression.
///
/// The moves come from the inventory: every version the devices of an image run now, towards
/// the versions its channels name and its newest (`sweep`, every `precomputeInterval`; a
/// version a device is sent to is one of those). A move's batches are those a device with the
/// default download window asks for (`ContentBatch.forecast`), with the same keys. They are
/// computed one move and one batch at a time, on a thread of their own at a lower CPU priority
/// (nice 10) with one core (`BatchService.computeAhead`), for the moves queued within
/// `precomputeHours`; each move once while the server runs (its batches are then in the cache,
/// trimmed like the others).
final class BatchPrecompute: Sendable {
    struct Move: Hashable, Sendable {
        let image: String
        let from: String
        let to: String
    }

    private let service: BatchService
    private let index: RepositoryIndex
    private let upstream: UpstreamService?
    private let logger: Logger
    private let known = Locked(Set<Move>())
    private let figures = Locked((done: 0, failed: 0, seconds: 0.0))
    /// The moves queued, computed one after the other by `run`.
    private let queue: AsyncStream<Move>.Continuation
    private let moves: AsyncStream<Move>

    init(service: BatchService, index: RepositoryIndex, upstream: UpstreamService?, logger: Logger) {
        self.service = service
        self.index = index
        self.upstream = upstream
        self.logger = logger
        (moves, queue) = AsyncStream.makeStream(of: Move.self)
    }

    /// Computes the moves queued, one at a time, until cancelled.
    func run() async {
        for await move in moves {
            if Task.isCancelled { return }
            await compute(move)
        }
    }

    var interval: Double { service.settings.precomputeInterval }

    /// Moves computed and failed, and the seconds they took, since the start.
    var counts: (done: Int, failed: Int, seconds: Double) { figures.withLock { $0 } }

    /// Queues `move` unless it was queued before, or the hours do not allow it now.
    func want(_ move: Move) {
        guard move.from != move.to, service.settings.precomputeHours?.contains(Date()) ?? true,
              index.manifest(image: move.image, version: move.from) != nil, index.manifest(image: move.image, version: move.to) != nil,
              known.withLock({ $0.insert(move).inserted }) else { return }
        queue.yield(move)
    }

    /// Queues the moves the inventory says are coming. Blocks (it reads the inventory).
    func sweep(_ inventory: FleetInventory) throws {
        for image in index.images() {
            let targets = index.targets(of: image)
            for version in try inventory.versions(of: image) {
                for target in targets { want(Move(image: image, from: version, to: target)) }
            }
        }
    }

    private func compute(_ move: Move) async {
        let (index, root) = (index, service.repository.root)
        let started = DispatchTime.now()
        do {
            let requests = try await service.fileThreads.run {
                func manifest(_ version: String) throws -> Manifest {
                    guard let path = index.manifest(image: move.image, version: version)?.path else {
                        throw UpdError(.usage, "the repository no longer holds \(move.image) \(version)")
                    }
                    return try ManifestParser.parse(contentsOf: "\(root)/\(path)")
                }
                return try ContentBatch.forecast(from: manifest(move.from), to: manifest(move.to))
            }
            // A school that follows an upstream fetches the contents first (it would for the batch).
            try await upstream?.ensureContents(Set(requests.flatMap(\.items).flatMap { [$0.hash] + ($0.base.map { [$0] } ?? []) }))
            for request in requests { try await service.computeAhead(request) }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            figures.withLock { $0.done += 1; $0.seconds += seconds }
        } catch {
            figures.withLock { $0.failed += 1 }
            logger.error("batch precompute of \(move.image) \(move.from) -> \(move.to): \(error); its devices' batches are computed when they ask")
        }
    }
}
