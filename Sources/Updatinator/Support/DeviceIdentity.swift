import Foundation

/// This machine's stable identity: the one configured, else /etc/machine-id.
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
}
