import Foundation
@testable import Updatinator

/// The project's scripts and policies, found from this file.
enum Scripts {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ name: String) -> String { repositoryRoot.appendingPathComponent("scripts/\(name)").path }

    static func policy(_ name: String) -> String { repositoryRoot.appendingPathComponent("policies/client/\(name)").path }
}

/// nginx serving a repository on loopback, stopped when released.
final class NginxMirror {
    let url: String
    let state: String

    /// Serves `repo`, over HTTPS with `tls`'s certificate and key when given.
    init(repo: String, tls: (certificate: String, key: String)? = nil) throws {
        let options = tls.map { ["--tls", $0.certificate, $0.key] } ?? []
        let out = try Shell.run([Scripts.path("serve-repo")] + options + [repo]).split(separator: " ")
        url = String(out[0])
        state = String(out[1]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { _ = try? Shell.run([Scripts.path("serve-repo"), "--stop", state]) }

    /// The requests nginx answered, from its access log ("GET /blobs/… HTTP/1.1 200 1234").
    var requests: [Substring] {
        ((try? String(contentsOfFile: "\(state)/access.log", encoding: .utf8)) ?? "").split(separator: "\n")
    }

    /// Body bytes nginx sent for blobs, from its access log ("GET /blobs/… HTTP/1.1 200 1234").
    var blobBytesSent: Int {
        requests.filter { $0.hasPrefix("GET /blobs/") }
            .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
    }
}

/// nginx as a caching proxy (proxy_cache, a CDN's stand-in) in front of an origin, stopped when
/// released.
final class NginxProxy {
    let url: String
    let state: String

    init(origin: String) throws {
        let out = try Shell.run([Scripts.path("serve-repo"), "--proxy", origin]).split(separator: " ")
        url = String(out[0])
        state = String(out[1]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { _ = try? Shell.run([Scripts.path("serve-repo"), "--stop", state]) }

    /// The requests it answered: "GET /blobs/… HTTP/1.1 200 1234 HIT" (the cache's status last).
    var requests: [Substring] {
        ((try? String(contentsOfFile: "\(state)/access.log", encoding: .utf8)) ?? "").split(separator: "\n")
    }
}

/// nginx in front of server processes side by side, round robin (scripts/serve-repo --replicas).
final class NginxBalancer {
    let url: String
    let state: String

    init(_ replicas: [String]) throws {
        let out = try Shell.run([Scripts.path("serve-repo"), "--replicas"] + replicas).split(separator: " ")
        url = String(out[0])
        state = String(out[1]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { _ = try? Shell.run([Scripts.path("serve-repo"), "--stop", state]) }

    /// The replica that answered each request, in order ("127.0.0.1:PORT").
    var replicasAnswering: [Substring] {
        ((try? String(contentsOfFile: "\(state)/access.log", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { $0.split(separator: " ").last }
    }
}

/// A PostgreSQL server of the test's own (scripts/postgres), stopped and removed when released.
final class PostgresServer {
    let url: String
    let directory: String

    init() throws {
        let out = try Shell.run([Scripts.path("postgres"), "start"]).split(separator: " ")
        url = String(out[0])
        directory = String(out[1]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { _ = try? Shell.run([Scripts.path("postgres"), "stop", directory]) }
}

/// scripts/flaky-mirror in one of its misbehaving modes, stopped when released.
final class FlakyMirror {
    let url: String
    private let server: Subprocess

    init(repo: String, mode: String, arguments: [String] = []) throws {
        let server = try Subprocess([Scripts.path("flaky-mirror"), repo, mode] + arguments)
        self.server = server
        // The server prints its URL once it listens.
        guard eventually(within: 10, { server.stdout.contains("\n") || !server.isRunning }), server.stdout.contains("\n") else {
            throw UpdError(.io, "flaky-mirror did not start: \(server.stderr)")
        }
        url = server.stdout.split(separator: "\n")[0].trimmingCharacters(in: .whitespaces)
    }

    /// What the server printed: its URL, then a line for each blob answer it sent or held.
    var output: String { server.stdout }

    deinit { server.stop() }
}
