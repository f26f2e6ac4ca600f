import Foundation

/// This machine's stable identity: UPDATINATOR_DEVICE_ID, else /etc/machine-id.
public enum DeviceIdentity {
    public static func read() throws -> String {
        if let id = ProcessInfo.processInfo.environment["UPDATINATOR_DEVICE_ID"], !id.isEmpty { return id }
        guard let id = try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !id.isEmpty else {
            throw UpdError(.io, "/etc/machine-id: no machine identity (set UPDATINATOR_DEVICE_ID)")
        }
        return id
    }
}
