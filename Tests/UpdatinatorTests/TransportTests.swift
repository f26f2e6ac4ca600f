import Foundation
import Glibc
import Testing
@testable import Updatinator

/// One transport: the school server's POSTs, a pack's range GETs and fallbacks get the retries,
/// failover, byte caps and mirror demotions that blob downloads have.
@Suite struct TransportTests {
    let school: SchoolServerTests
    var samples: SampleImages { school.samples }

    init() throws { school = try SchoolServerTests() }

    /// A server that drops the first connection whose request `drop` picks, and passes every
    /// other one to `upstream`.
    static func droppingProxy(to upstream: String, _ drop: @escaping @Sendable (LoopbackServer.Head) -> Bool) throws -> LoopbackServer {
        let port = UInt16(upstream.split(separator: ":").last!)!
        let dropped = Locked(false)
        return try LoopbackServer { head in
            let now = drop(head) && dropped.withLock { d in
                defer { d = true }
                return !d
            }
            return now ? .close : .forward(port: port)
        }
    }

    @Test func aBatchPostWhoseConnectionDropsIsRetriedNotReplacedByBlobs() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let proxy = try Self.droppingProxy(to: server.server.url) { $0.method == "POST" && $0.path == "/v1/batch" }
        let laptop = try school.installedTree("dropped-batch", version: "1")
        let target = try Keyring(directory: samples.keyring).verifiedManifest(at: samples.manifest("olpc-ext3", "2"))
        let sources = ContentSources(mirrors: FetchOptions(mirrors: [proxy.url]), batchServer: proxy.url, signer: try TestDevices.signer("dropped-batch"))
        let report = try UpdateEngine.apply(UpdateEngine.ApplyRequest(root: laptop, target: target, sources: sources))
        #expect(report.fallbacks.isEmpty, "\(report.fallbacks)")
        #expect(proxy.requests.filter { $0.method == "POST" && $0.path == "/v1/batch" }.count == 2, "\(proxy.requests)")
        #expect(try server.server.metric("updatinator_batches_total", ["computed"]) == 1)
        #expect(try server.server.metric("updatinator_requests_total", ["blobs"]) == 0)
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
    }

    @Test func aStreamedBatchWhoseDownloadDropsStartsAgainAndIsReadWhole() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--no-batch-precompute"])
        let proxy = try Self.droppingProxy(to: server.server.url) { $0.method == "GET" && $0.path.hasPrefix("/v1/batch/") }
        let laptop = try school.installedTree("dropped-stream", version: "1")
        let target = try Keyring(directory: samples.keyring).verifiedManifest(at: samples.manifest("olpc-ext3", "2"))
        let sources = ContentSources(mirrors: FetchOptions(mirrors: [proxy.url]), batchServer: proxy.url, signer: try TestDevices.signer("dropped-stream"))
        let report = try UpdateEngine.apply(UpdateEngine.ApplyRequest(root: laptop, target: target, sources: sources))
        #expect(report.fallbacks.isEmpty, "\(report.fallbacks)")
        #expect(proxy.requests.filter { $0.method == "GET" && $0.path.hasPrefix("/v1/batch/") }.count == 2, "\(proxy.requests)")
        #expect(try server.server.metric("updatinator_batches_total", ["computed"]) == 1)
        #expect(try server.server.metric("updatinator_requests_total", ["blobs"]) == 0)
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
    }

    @Test func aCheckAndAReportWhoseConnectionsDropAreRetried() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let proxy = try Self.droppingProxy(to: server.server.url) { $0.method == "POST" }
        let client = SchoolServerClient(server: proxy.url, signer: try TestDevices.signer("d1"))
        let nonce = SchoolServerClient.newNonce()
        let body = Array(try JSONSerialization.data(withJSONObject: ["device": "d1", "nonce": nonce, "image": "olpc-ext3", "version": "1"]))
        let decision = try client.check(body: body, device: "d1", nonce: nonce, keyring: Keyring(directory: server.decisionKeyring),
                                        now: Int64(Date().timeIntervalSince1970))
        #expect(decision.update && decision.version == "2")
        try client.report(body: Array(try JSONSerialization.data(withJSONObject: ["device": "d1", "status": "applying"])))
        #expect(proxy.requests.filter { $0.method == "POST" }.map(\.path) == ["/v1/check", "/v1/check", "/v1/report"], "\(proxy.requests)")
    }

    @Test func anEndlessAnswerToACheckIsCutAtItsCapWithAClearError() throws {
        let hostile = try LoopbackServer { _ in .endless }
        let keyring = try Keyring(directory: samples.keyring)
        let began = Date()
        expectUpdError(.network, "POST \(hostile.url)/v1/check: sent more than the 65536 bytes allowed") {
            try SchoolServerClient(server: hostile.url, signer: try TestDevices.signer("d1")).check(body: Array("{}".utf8), device: "d1", nonce: "n", keyring: keyring, now: 0)
        }
        // Cut at once, not retried: a server that floods is not one that may do better.
        #expect(hostile.requests.count == 1)
        #expect(Date().timeIntervalSince(began) < 10)
    }

    @Test func aPacksRangeRequestsFailOverFromADeadFirstMirror() throws {
        let deltas = try DeltaUpgradeTests()
        let nginx = try NginxMirror(repo: try deltas.packedRepository())
        let dead = try LoopbackServer.deadURL()
        let root = deltas.tmp.sub("tree-dead-first")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let r = try CLI.run(["apply", "--root", root, "--from", samples.manifest("olpc-ext3", "1"), "--to", samples.manifest("olpc-ext3", "2"),
                             "--keyring", samples.keyring, "--mirror", dead, "--mirror", nginx.url, "--json"])
        try #require(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect((report["fallbacks"] as! [String]).isEmpty, "\(report["fallbacks"]!)")
        #expect(!r.stderr.contains("one by one"), "\(r.stderr)")
        let log = try String(contentsOfFile: "\(nginx.state)/access.log", encoding: .utf8).split(separator: "\n")
        #expect(log.filter { $0.contains(".pack ") }.count >= 1, "the pack came by ranges from the second mirror")
        #expect(try CLI.run(["fsck", "--tree", root, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
    }

    @Test func aFallbackTriesTheMirrorsTheOperationDemotedLast() throws {
        let deltas = try DeltaUpgradeTests()
        let repo = try deltas.repositoryWithDeltas([(("olpc-ext3", "1"), ("olpc-ext3", "2"))])
        // One delta with a flipped byte (a copy: the repository's files are hardlinks): its
        // content falls back to its blob.
        let files = try FileManager.default.subpathsOfDirectory(atPath: repo + "/deltas").filter { $0.contains("-") }.sorted()
        let corrupt = "\(repo)/deltas/\(try #require(files.first))"
        var bytes = try Sys.readFile(corrupt)
        bytes[bytes.count - 3] ^= 0x55
        Sys.unlink(corrupt)
        try Sys.writeFileAtomically(corrupt, bytes)
        // A first mirror that is always busy: the delta index's first file demotes it.
        let busy = try LoopbackServer { _ in .reply(status: 503, body: Array("busy\n".utf8)) }
        let root = deltas.tmp.sub("tree-busy-first")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let r = try CLI.run(["apply", "--root", root, "--from", samples.manifest("olpc-ext3", "1"), "--to", samples.manifest("olpc-ext3", "2"),
                             "--keyring", samples.keyring, "--mirror", busy.url, "--mirror", "file://" + repo, "--json"])
        try #require(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect((report["fallbacks"] as! [String]).count == 1, "\(report["fallbacks"]!)")
        let paths = busy.requests.map(\.path)
        #expect(paths.count == 3, "three tries of the first file, then never again: \(paths)")
        #expect(!paths.contains { $0.hasPrefix("/blobs/") }, "the fallback's blob went to the mirror that works: \(paths)")
        #expect(try CLI.run(["fsck", "--tree", root, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
    }
}

/// A small HTTP server on loopback whose every connection does what the test says: close at
/// once, answer, answer without end, or pass the connection to another server.
final class LoopbackServer: @unchecked Sendable {
    struct Head: Sendable, CustomStringConvertible {
        let method: String
        let path: String
        var description: String { "\(method) \(path)" }
    }

    enum Action {
        /// Closes the connection after reading the request, with no answer.
        case close
        case reply(status: Int, body: [UInt8])
        /// Answers 200 with no length, and zeros until the client goes.
        case endless
        /// Passes the connection, from this request on, to a server on this loopback port.
        case forward(port: UInt16)
    }

    let url: String
    private let listener: Int32
    private let log = Locked([Head]())
    private let stopped = Locked(false)

    /// The first line of each request, in order of arrival (the first request of each connection).
    var requests: [Head] { log.withLock { $0 } }

    init(_ decide: @escaping @Sendable (Head) -> Action) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        listener = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw UpdError.system("bind", "127.0.0.1") }
        url = "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))"
        let requests = log, ended = stopped
        Thread {
            while true {
                let connection = accept(fd, nil, nil)
                if connection < 0 {
                    if ended.withLock({ $0 }) { return }
                    continue
                }
                Thread { Self.serve(connection, log: requests, decide: decide) }.start()
            }
        }.start()
    }

    deinit {
        stopped.withLock { $0 = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// An http URL where nothing listens: a port bound, then closed.
    static func deadURL() throws -> String {
        let server = try LoopbackServer { _ in .close }
        return server.url
    }

    private static func serve(_ fd: Int32, log: Locked<[Head]>, decide: (Head) -> Action) {
        defer { close(fd) }
        var received = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        let blank = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { return }
            received += chunk[0..<n]
            headEnd = (0...max(0, received.count - 4)).first { received[$0..<min(received.count, $0 + 4)].elementsEqual(blank) }
        }
        let head = String(decoding: received[0..<headEnd!], as: UTF8.self)
        let words = head.split(separator: "\r\n").first?.split(separator: " ") ?? []
        guard words.count >= 2 else { return }
        log.withLock { $0.append(Head(method: String(words[0]), path: String(words[1]))) }
        switch decide(Head(method: String(words[0]), path: String(words[1]))) {
        case .close:
            return
        case .reply(let status, let body):
            // Read the request's body first, so that closing does not reset the connection.
            let length = head.lowercased().split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            while received.count < headEnd! + 4 + length {
                let n = recv(fd, &chunk, chunk.count, 0)
                guard n > 0 else { return }
                received += chunk[0..<n]
            }
            _ = sendAll(fd, Array("HTTP/1.1 \(status) Answer\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body)
        case .endless:
            guard sendAll(fd, Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".utf8)) else { return }
            let zeros = [UInt8](repeating: 0, count: 65536)
            while sendAll(fd, zeros) {}
        case .forward(let port):
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(upstream) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = port.bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected, sendAll(upstream, received) else { return }
            let done = DispatchSemaphore(value: 0)
            Thread {
                pump(from: fd, to: upstream)
                done.signal()
            }.start()
            pump(from: upstream, to: fd)
            // Either side gone: end the other direction too.
            shutdown(fd, Int32(SHUT_RDWR))
            shutdown(upstream, Int32(SHUT_RDWR))
            done.wait()
        }
    }

    /// Copies bytes until `from` ends or `to` fails.
    private static func pump(from: Int32, to: Int32) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(from, &chunk, chunk.count, 0)
            guard n > 0, sendAll(to, Array(chunk[0..<n])) else { break }
        }
        shutdown(to, Int32(SHUT_WR))
    }

    /// Sends every byte (never raising SIGPIPE); whether it could.
    private static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }
}
