import Foundation
@testable import Updatinator

/// Device keys for tests that run several devices on one host: each device id has its own key
/// file in a directory of this test process, which the CLI is pointed at
/// (UPDATINATOR_DEVICE_KEY) and which `ServeProcess.post` signs with, so a device's CLI runs and
/// a test's own requests for it speak with one key.
enum TestDevices {
    static let directory: String = {
        let path = "/tmp/updatinator-device-keys-\(getpid())"
        try? Sys.mkdirs(path, mode: 0o700)
        // Removed when the test process ends (the keys are of no use after it).
        atexit { _ = try? FileManager.default.removeItem(atPath: "/tmp/updatinator-device-keys-\(getpid())") }
        return path
    }()

    /// The key file of a device id (made on first use).
    static func keyPath(for device: String) -> String {
        "\(directory)/\(Blake2b.hash(Array(device.utf8)).hex.prefix(24)).key"
    }

    /// The signer of a device's requests.
    static func signer(_ device: String, enrolmentToken: [UInt8]? = nil) throws -> RequestSigner {
        RequestSigner(sender: device, key: try DeviceIdentity.key(at: keyPath(for: device)), enrolmentToken: enrolmentToken)
    }

    /// The environment of an `updatinator` run: unless it names a key file, the key of the device
    /// it runs as (`--device`, else UPDATINATOR_DEVICE_ID, else this machine's id).
    static func environment(_ arguments: [String], _ environment: [String: String]) -> [String: String] {
        guard environment["UPDATINATOR_DEVICE_KEY"] == nil, !arguments.contains("--device-key") else { return environment }
        let device = arguments.firstIndex(of: "--device").flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
            ?? environment["UPDATINATOR_DEVICE_ID"] ?? ProcessInfo.processInfo.environment["UPDATINATOR_DEVICE_ID"]
            ?? (try? DeviceIdentity.read()) ?? "machine"
        return environment.merging(["UPDATINATOR_DEVICE_KEY": keyPath(for: device)]) { $1 }
    }
}
