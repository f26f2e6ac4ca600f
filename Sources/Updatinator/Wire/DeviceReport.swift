import Foundation

/// What a device reports (`POST /v1/report`): its status, and the image the event is about
/// (the target while checking, downloading or applying, or on failure; the image now running
/// when `done`).
///
/// Decoding refuses, naming the field: a missing or malformed `device`, an unknown `status`,
/// an `image` or `version` that is not a valid name, a malformed `code`, a `message` over 2000
/// bytes, a negative `bytes`, a `peer` that is not an http(s) URL, and any other field (nothing
/// would read it: a misspelt field is an error, not a silent loss). Null counts as absent.
public struct DeviceReport: Codable, Equatable, Sendable {
    public enum Status: String, Codable, CaseIterable, Sendable {
        /// `staged`: deployed beside the running image, which it replaces at the next boot; the
        /// device reports `done` once it has booted it and marked it good.
        case checking, downloading, applying, staged, done, failed, deferred
    }

    public var device: String
    public var status: Status
    public var image: String?
    public var version: String?
    /// An error's code (`UpdError.Code`'s raw value) and message, with `failed`.
    public var code: String?
    public var message: String?
    /// Bytes downloaded, with `done`.
    public var bytes: Int64?
    /// The device's peer server, advertised with `done`.
    public var peer: String?

    public static let fieldNames: Set<String> = ["device", "status", "image", "version", "code", "message", "bytes", "peer"]
    public static let maxMessageBytes = 2000

    public init(device: String, status: Status, image: String? = nil, version: String? = nil, code: String? = nil,
                message: String? = nil, bytes: Int64? = nil, peer: String? = nil) {
        self.device = device
        self.status = status
        self.image = image
        self.version = version
        self.code = code
        self.message = message
        self.bytes = bytes
        self.peer = peer
    }

    public init(from decoder: Decoder) throws {
        let object = try WireObject(decoder)
        try object.refuseUnknown(Self.fieldNames)
        device = try object.required("device", String.self, WireCoding.identifierExpected, where: WireCoding.isIdentifier)
        let known = Status.allCases.map(\.rawValue).joined(separator: ", ")
        status = try object.required("status", Status.self, "one of \(known) expected")
        image = try object.imageName("image")
        version = try object.imageName("version")
        code = try object.optional("code", String.self, WireCoding.identifierExpected, where: WireCoding.isIdentifier)
        message = try object.optional("message", String.self, "a string of at most \(Self.maxMessageBytes) bytes expected") {
            $0.utf8.count <= Self.maxMessageBytes
        }
        bytes = try object.optional("bytes", Int64.self, "a byte count expected") { $0 >= 0 }
        peer = try object.optional("peer", String.self, "an http(s) URL expected", where: WireCoding.isPeerURL)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(device, "device")
        try c.encode(status, "status")
        try c.encode(image, "image")
        try c.encode(version, "version")
        try c.encode(code, "code")
        try c.encode(message, "message")
        try c.encode(bytes, "bytes")
        try c.encode(peer, "peer")
    }
}
