import Foundation
import Glibc

/// This machine's stable identity: the one configured, else /etc/machine-id; and its device
/// key, which signs every request it sends its school server.
public enum DeviceIdentity {
    /// The configured id when it is not empty (the CLI reads UPDATINATOR_DEVICE_ID), else /etc/machine-id.
    public static func read(configured: String? = nil) throws -> String {
        if let configured, !configured.isEmpty { return configured }
        guard let id = try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !id.isEmpty else {
            throw UpdError(.io, "/etc/machine-id: no machine identity (set UPDATINATOR_DEVICE_ID)")
        }
        return id
    }

    /// The device's secret key at `path` (a secret key file, mode 0600), made on first use: a new
    /// key is written to a temporary file and linked to its name, so two processes starting at
    /// once end with the same key and a crash never leaves half a key. The key never leaves the
    /// machine; the server learns only its public half.
    public static func key(at path: String) throws -> SecretKey {
        if let existing = try Sys.lstatIfExists(path) {
            guard existing.st_mode & S_IFMT == S_IFREG else {
                throw UpdError(.unsafe, "\(path): the device key is not a regular file", path: path)
            }
            guard existing.st_mode & 0o077 == 0 else {
                throw UpdError(.permission, "\(path): the device key is readable by others (mode \(String(existing.st_mode & 0o777, radix: 8))); chmod 600 it", path: path)
            }
            return try KeyFile.parseSecret(Sys.readFile(path, limit: 4096), source: path)
        }
        let directory = Sys.parentDirectory(of: path)
        try Sys.mkdirs(directory)
        let temporary = "\(directory)/.device-key.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        try Sys.writeFileAtomically(temporary, KeyFile.encode(SecretKey.generate()), mode: 0o600)
        defer { Sys.unlink(temporary) }
        if link(temporary, path) != 0 && errno != EEXIST { throw UpdError.system("link", path) }
        return try KeyFile.parseSecret(Sys.readFile(path, limit: 4096), source: path)
    }
}
