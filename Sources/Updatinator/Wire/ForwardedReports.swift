import Foundation

/// Devices' reports a school server forwards to the tier above (`POST /v1/reports`), from its
/// outbox, in order: each with the school's sequence number, so that the upper tier records
/// each once however often a batch is sent again, and the time and address the school saw.
///
/// `epoch` names the school's outbox: a school whose database was replaced starts a new count.
///
/// Decoding refuses, naming the field: a malformed `epoch`; no `reports`, or more than `maxReports`; a `seq` that is
/// not a positive integer, or sequence numbers not increasing; a `time` that is not a positive
/// integer; an `address` over 64 bytes; a report that `DeviceReport` refuses; and any other field.
public struct ForwardedReports: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var seq: Int64
        public var time: Int64
        public var address: String?
        public var report: DeviceReport

        public init(seq: Int64, time: Int64, address: String?, report: DeviceReport) {
            (self.seq, self.time, self.address, self.report) = (seq, time, address, report)
        }

        public init(from decoder: Decoder) throws {
            let object = try WireObject(decoder)
            try object.refuseUnknown(["seq", "time", "address", "report"])
            seq = try object.required("seq", Int64.self, "a positive integer expected") { $0 > 0 }
            time = try object.required("time", Int64.self, "a positive integer expected") { $0 > 0 }
            address = try object.optional("address", String.self, "an address of at most 64 bytes expected") { $0.utf8.count <= 64 }
            report = try object.required("report", DeviceReport.self, "a report expected")
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: WireKey.self)
            try c.encode(seq, "seq")
            try c.encode(time, "time")
            try c.encode(address, "address")
            try c.encode(report, "report")
        }
    }

    public var epoch: String
    public var reports: [Entry]
    public static let maxReports = 1000
    /// The most a request may carry: a thousand reports at their largest.
    public static let maxRequestBytes = 4 << 20

    public init(epoch: String, reports: [Entry]) {
        self.epoch = epoch
        self.reports = reports
    }

    public init(from decoder: Decoder) throws {
        let object = try WireObject(decoder)
        try object.refuseUnknown(["epoch", "reports"])
        epoch = try object.required("epoch", String.self, WireCoding.identifierExpected, where: WireCoding.isIdentifier)
        reports = try object.required("reports", [Entry].self, "a list of 1 to \(Self.maxReports) reports in increasing seq expected") {
            (1...Self.maxReports).contains($0.count) && zip($0, $0.dropFirst()).allSatisfy { $0.seq < $1.seq }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(epoch, "epoch")
        try c.encode(reports, "reports")
    }
}
