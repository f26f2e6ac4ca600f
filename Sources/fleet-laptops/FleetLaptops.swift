import Foundation
import Updatinator

/// Light laptops for `scripts/fleet-sim`: many simulated devices of one school, each with its
/// own key, that check, download what a move costs and report, as `updatinator upgrade` does,
/// but apply nothing. Each device runs the image of FROM_MANIFEST; it checks every INTERVAL
/// seconds until it is told to move, then fetches the target's manifest and its contents as one
/// batch (every content it lacks, whole), counts the bytes, and reports `done` (or, for the
/// share of devices FAIL_SHARE picks by bucket, `failed`). It ends when every device reported,
/// or after DEADLINE seconds, and prints one JSON line of what happened.
///
/// `fleet-laptops SERVER DECISION_KEYRING FROM_MANIFEST PREFIX COUNT INTERVAL FAIL_SHARE DEADLINE`
///
/// `fleet-laptops probe SERVER DECISION_KEYRING FROM_MANIFEST DEVICE` checks once as DEVICE and
/// prints `update VERSION` or the reason there is none.
@main
enum FleetLaptops {
    struct Totals: Codable {
        var devices = 0
        var done = 0
        var failed = 0
        var checks = 0
        var reports = 0
        var downloadedBytes: UInt64 = 0
        var errors = 0
        var lastError: String?
        var seconds = 0.0
    }

    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "probe", arguments.count == 5 {
            let from = try ManifestParser.parse(contentsOf: arguments[3])
            let client = SchoolServerClient(server: arguments[1], signer: RequestSigner(sender: arguments[4], key: key(for: arguments[4])))
            let decision = try client.check(CheckRequest(device: arguments[4], nonce: SchoolServerClient.newNonce(), image: from.image, version: from.version),
                                            keyring: try Keyring(directory: arguments[2]), now: Int64(Date().timeIntervalSince1970))
            print(decision.update ? "update \(decision.version ?? "")" : decision.reason ?? "up-to-date")
            return
        }
        guard arguments.count == 8, let count = Int(arguments[4]), let interval = Double(arguments[5]),
              let failShare = Double(arguments[6]), let deadline = Double(arguments[7]) else {
            FileHandle.standardError.write(Data("usage: fleet-laptops SERVER DECISION_KEYRING FROM_MANIFEST PREFIX COUNT INTERVAL FAIL_SHARE DEADLINE\n".utf8))
            exit(64)
        }
        let (server, prefix) = (arguments[0], arguments[3])
        let keyring = try Keyring(directory: arguments[1])
        let from = try ManifestParser.parse(contentsOf: arguments[2])
        let started = Date()
        let totals = Locked(Totals())
        totals.withLock { $0.devices = count }
        // Devices waiting for their next check, the next first (at the end), each with its time.
        let pending = Locked((0..<count).map { ($0, started) })
        let finished = DispatchSemaphore(value: 0)
        let workers = 8
        for _ in 0..<workers {
            Thread {
                defer { finished.signal() }
                while Date().timeIntervalSince(started) < deadline, let (n, due) = pending.withLock({ $0.popLast() }) {
                    let wait = due.timeIntervalSinceNow
                    if wait > 0 { Thread.sleep(forTimeInterval: wait) }
                    let device = "\(prefix)-\(n)"
                    let fails = Double(RolloutBucket.of(device: device, salt: "fleet-sim")) < failShare * 100
                    do {
                        if try moved(device, server: server, keyring: keyring, from: from, fails: fails, totals: totals) { continue }
                    } catch {
                        totals.withLock {
                            $0.errors += 1
                            $0.lastError = "\(error)"
                        }
                    }
                    // Not moved yet: back to the queue, to check again after the interval.
                    pending.withLock { $0.insert((n, Date().addingTimeInterval(interval)), at: 0) }
                }
            }.start()
        }
        for _ in 0..<workers { finished.wait() }
        var result = totals.withLock { $0 }
        result.seconds = Date().timeIntervalSince(started)
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        FileHandle.standardOutput.write(try encoder.encode(result) + Data("\n".utf8))
    }

    /// One check of `device`, and the move when it is told to make one: whether it reported.
    static func moved(_ device: String, server: String, keyring: Keyring, from: Manifest, fails: Bool, totals: Locked<Totals>) throws -> Bool {
        let signer = RequestSigner(sender: device, key: key(for: device))
        let client = SchoolServerClient(server: server, signer: signer)
        let fetcher = try CurlFetcher(options: FetchOptions(mirrors: [server]))
        let check = CheckRequest(device: device, nonce: SchoolServerClient.newNonce(), image: from.image, version: from.version)
        let decision = try client.check(check, keyring: keyring, now: Int64(Date().timeIntervalSince1970))
        totals.withLock { $0.checks += 1 }
        guard decision.update, let path = decision.manifestPath, let image = decision.image, let version = decision.version else { return false }
        let manifestBytes = try fetcher.call("GET", path, to: server, body: nil, headers: [], maxResponseBytes: ManifestParser.maxManifestBytes)
        guard manifestBytes.status == 200 else { throw UpdError(.network, "\(server)/\(path): HTTP \(manifestBytes.status)") }
        guard Blake2b.hash(manifestBytes.body).hex == decision.manifestHash else { throw UpdError(.verification, "\(path): not the manifest decided") }
        let target = try ManifestParser.parse(manifestBytes.body, source: path)
        let held = from.contents
        let items = target.contents.filter { held[$0.key] == nil && $0.value.size > 0 }.sorted { $0.key < $1.key }
            .map { ContentBatch.Item(hash: $0.key, size: $0.value.size) }
        var downloaded = UInt64(manifestBytes.body.count)
        if !items.isEmpty {
            let request = try WireCoding.encode(BatchRequest(items: items, device: device))
            let answer = try signer.post("v1/batch", to: server, body: request, via: fetcher, deadlineSeconds: 900)
            guard answer.status == 200 else { throw UpdError(.network, "\(server)/v1/batch: HTTP \(answer.status)") }
            let batch = try WireCoding.decode(BatchAnswer.self, from: answer.body)
            // (A request that does not ask for a stream is answered once the batch is whole.)
            guard let bytes = batch.bytes else { throw UpdError(.corrupt, "\(server)/v1/batch: an answer without the batch's size") }
            let body = try fetcher.call("GET", batch.path, to: server, body: nil, headers: [], maxResponseBytes: Int(bytes) + 1, deadlineSeconds: 900)
            guard body.status == 200, body.body.count == bytes else { throw UpdError(.network, "\(server)\(batch.path): HTTP \(body.status)") }
            downloaded += bytes
        }
        let report = fails ? DeviceReport(device: device, status: .failed, image: image, version: version, code: "io", message: "simulated failure")
                           : DeviceReport(device: device, status: .done, image: image, version: version, bytes: Int64(downloaded))
        try client.report(report)
        totals.withLock {
            $0.reports += 1
            $0.downloadedBytes += downloaded
            if fails { $0.failed += 1 } else { $0.done += 1 }
        }
        return true
    }

    /// Each device's key, made at its first check and kept for the run.
    static let keys = Locked([String: SecretKey]())

    static func key(for device: String) -> SecretKey {
        keys.withLock { keys in
            if let key = keys[device] { return key }
            let key = SecretKey.generate()
            keys[device] = key
            return key
        }
    }
}
