import Foundation
import Testing
import Updatinator
@testable import UpdatinatorLua

/// What a script without `io` and `os` may touch through `upd`: `AllowedPaths`.
@Suite struct PathTests {
    let dir: String
    let allowed: String

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lua-paths-\(UUID().uuidString)").path
        allowed = dir + "/allowed"
        try FileManager.default.createDirectory(atPath: allowed + "/keys", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/outside/keys", withIntermediateDirectories: true)
        for keys in [allowed + "/keys", dir + "/outside/keys"] {
            try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: "\(keys)/k.sec", publicPath: "\(keys)/k.pub")
        }
        try FileManager.default.createSymbolicLink(atPath: allowed + "/link", withDestinationPath: dir + "/outside")
    }

    func run(_ code: String, paths: AllowedPaths?) throws -> [LuaValue] {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = LuaState.Options()
        options.allowedPaths = paths
        return try LuaState(options: options).run("return pcall(function() \(code) end)", chunkName: "=script")
    }

    var paths: AllowedPaths { AllowedPaths(writable: [allowed], readable: [], trees: []) }

    @Test("lua-sandbox: a script reads and writes only the paths it is allowed, whatever symlinks and .. say", arguments: [
        ("upd.manifest.load('/etc/passwd')", "/etc/passwd"),
        ("upd.manifest.load('file:///etc/passwd')", "/etc/passwd"),
        ("upd.keyring('OUT/keys')", "OUT/keys"),
        ("upd.keyring('ALLOWED/link/keys')", "ALLOWED/link/keys (OUT/keys)"),
        ("upd.keyring('ALLOWED/../outside/keys')", "ALLOWED/../outside/keys (OUT/keys)"),
        ("upd.keyring('ALLOWED/new/../../outside/keys')", "ALLOWED/new/../../outside/keys"),
        ("upd.get_manifest('file://ALLOWED', 'i', '1', {dir = 'OUT/new'})", "OUT/new"),
        ("upd.get_manifest('ALLOWED/link', 'i', '1')", "ALLOWED/link (OUT)"),
        ("upd.manifest.installed('/')", "/"),
        ("upd.fsck('/etc', nil)", "/etc"),
        ("upd.status('OUT')", "OUT"),
    ])
    func refused(code: String, path: String) throws {
        let fill = { (s: String) in s.replacingOccurrences(of: "ALLOWED", with: allowed).replacingOccurrences(of: "OUT", with: dir + "/outside") }
        let r = try run(fill(code), paths: paths)
        #expect(r.first == .boolean(false))
        let message = r.last?.stringValue ?? ""
        #expect(message.contains(": \(fill(path))") && message.contains(" is outside the paths scripts may use; allow it with --allow-path DIR (or --allow-os)"),
                "\(r)")
    }

    @Test func allowedPathsWork() throws {
        let r = try run("return upd.keyring('\(allowed)/keys').directory, upd.keyring('\(allowed)/keys/../keys') ~= nil", paths: paths)
        #expect(r == [.boolean(true), .string(allowed + "/keys"), .boolean(true)], "\(r)")
    }

    @Test func withoutAllowedPathsEveryPathIsOpen() throws {
        let r = try run("return upd.keyring('\(dir)/outside/keys') ~= nil", paths: nil)
        #expect(r == [.boolean(true), .boolean(true)], "\(r)")
    }

    @Test func treesAreTreesOnly() throws {
        // A tree of / lets the engine act on the running system, not the script read its files.
        let r = try run("return upd.manifest.load('/etc/hostname')", paths: AllowedPaths(writable: [allowed], trees: ["/"]))
        #expect(r.first == .boolean(false) && r.last?.stringValue?.contains("/etc/hostname is outside") == true, "\(r)")
        let tree = try run("return upd.status('/')", paths: AllowedPaths(writable: [allowed], trees: ["/"]))
        #expect(tree.last?.stringValue?.contains("is outside") != true, "\(tree)")
    }
}
