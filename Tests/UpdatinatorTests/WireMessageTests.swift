import Foundation
import Testing
@testable import Updatinator

/// The school server's messages (`CheckRequest`, `DeviceReport`, `BatchRequest`, `BatchAnswer`):
/// what the client encodes is what the server decodes, under the field names docs/server.md
/// gives, and every refusal is one line naming the field.
@Suite struct WireMessageTests {
    static let hash = Blake2b.hash(Array("content".utf8))
    static let nonce = "00112233445566778899aabbccddeeff"

    /// The JSON object of an encoded message.
    func object(_ value: some Encodable) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(try WireCoding.encode(value))) as! [String: Any]
    }

    @Test func messagesRoundTripUnderTheDocumentedFieldNames() throws {
        let check = CheckRequest(device: "laptop-17", nonce: Self.nonce, image: "olpc", version: "445", channel: "stable",
                                 peer: "http://10.1.2.3:8081", freeBytes: 1 << 40, extra: ["school": .string("north"), "tags": .array([.integer(1)])])
        #expect(try WireCoding.decode(CheckRequest.self, from: try WireCoding.encode(check)) == check)
        #expect(Set(try object(check).keys) == ["device", "nonce", "image", "version", "channel", "peer", "free_bytes", "school", "tags"])

        let report = DeviceReport(device: "laptop-17", status: .failed, image: "olpc", version: "445", code: "no_space",
                                  message: "full", bytes: 12, peer: "http://10.1.2.3:8081")
        #expect(try WireCoding.decode(DeviceReport.self, from: try WireCoding.encode(report)) == report)
        #expect(try object(report)["status"] as? String == "failed")

        let batch = BatchRequest(items: [ContentBatch.Item(hash: Self.hash, size: 10, base: Self.hash, baseSize: 4),
                                         ContentBatch.Item(hash: Self.hash, size: 3)],
                                 after: [ContentBatch.Item(hash: Self.hash, size: 7)], limit: 100, device: "laptop-17")
        #expect(try WireCoding.decode(BatchRequest.self, from: try WireCoding.encode(batch)) == batch)
        let items = try object(batch)["items"] as! [[String: Any]]
        #expect(Set(items[0].keys) == ["hash", "size", "base", "base_size"] && Set(items[1].keys) == ["hash", "size"])

        let answer = BatchAnswer(path: "/v1/batch/\(Self.hash.hex)", bytes: 42)
        #expect(try WireCoding.decode(BatchAnswer.self, from: try WireCoding.encode(answer)) == answer)
    }

    @Test func aCheckKeepsWhatThePolicyReadsAndNullsAsAbsent() throws {
        let body = #"{"device": "d", "nonce": "0123456789abcdef", "image": null, "school": "north", "o": {"k": [1, 2.5, true]}}"#
        let check = try WireCoding.decode(CheckRequest.self, from: Array(body.utf8))
        #expect(check.image == nil)
        #expect(check.extra == ["school": .string("north"), "o": .object(["k": .array([.integer(1), .number(2.5), .boolean(true)])])])
    }

    @Test(arguments: [
        (#"[1, 2]"#, "not a JSON object"),
        (#"{"device": "d""#, "not a JSON object"),
        (#"{"nonce": "0123456789abcdef"}"#, "device: required"),
        (#"{"device": "d"}"#, "nonce: required"),
        (#"{"device": "a b", "nonce": "0123456789abcdef"}"#, "device: 1 to 128 printable characters"),
        (#"{"device": 7, "nonce": "0123456789abcdef"}"#, "device: 1 to 128 printable characters"),
        (#"{"device": "d", "nonce": "0123456789ABCDEF"}"#, "nonce: 16 to 128 lowercase hex digits expected"),
        (#"{"device": "d", "nonce": "0123456789abcdef", "image": "../etc"}"#, "image: "),
        (#"{"device": "d", "nonce": "0123456789abcdef", "channel": ""}"#, "channel: 1 to 128 printable characters"),
        (#"{"device": "d", "nonce": "0123456789abcdef", "peer": "file:///etc/passwd"}"#, "peer: an http(s) URL expected"),
        (#"{"device": "d", "nonce": "0123456789abcdef", "free_bytes": -1}"#, "free_bytes: a byte count expected"),
        (#"{"device": "d", "nonce": "0123456789abcdef", "x": [1, null]}"#, "x: a JSON value without null inside"),
        (#"{"device": "d", "nonce": "0123456789abcdef", "x": "# + String(repeating: "[", count: 16) + String(repeating: "]", count: 16) + "}",
         "x: a JSON value without null inside, at most 16 levels deep"),
    ])
    func checksAreRefusedNamingTheField(_ body: String, _ message: String) {
        expectUpdError(.corrupt, message, "\(body)") { try WireCoding.decode(CheckRequest.self, from: Array(body.utf8)) }
    }

    @Test func extraFieldsMayNestFifteenLevels() throws {
        let body = #"{"device": "d", "nonce": "0123456789abcdef", "x": "# + String(repeating: "[", count: 15) + String(repeating: "]", count: 15) + "}"
        #expect(try WireCoding.decode(CheckRequest.self, from: Array(body.utf8)).extra["x"]?.depth == 15)
    }

    @Test(arguments: [
        (#"{"status": "done"}"#, "device: required"),
        (#"{"device": "d", "status": "hacked"}"#, "status: one of checking, downloading, applying, staged, done, failed, deferred expected"),
        (#"{"device": "d", "status": "done", "mesage": "typo"}"#, "mesage: unknown field"),
        (#"{"device": "d", "status": "failed", "code": "a b"}"#, "code: 1 to 128 printable characters"),
        (#"{"device": "d", "status": "failed", "message": ""# + String(repeating: "x", count: 2001) + #""}"#, "message: a string of at most 2000 bytes expected"),
        (#"{"device": "d", "status": "done", "bytes": -5}"#, "bytes: a byte count expected"),
        (#"{"device": "d", "status": "done", "version": "1 2"}"#, "version: "),
    ])
    func reportsAreRefusedNamingTheField(_ body: String, _ message: String) {
        expectUpdError(.corrupt, message, "\(body)") { try WireCoding.decode(DeviceReport.self, from: Array(body.utf8)) }
    }

    @Test(arguments: [
        (#"{"reports": [REPORT]}"#, "epoch: required"),
        (#"{"epoch": "e 1", "reports": [REPORT]}"#, "epoch: 1 to 128 printable characters"),
        (#"{"epoch": "e", "reports": []}"#, "reports: a list of 1 to 1000 reports in increasing seq expected"),
        (#"{"epoch": "e", "reports": [REPORT, REPORT]}"#, "reports: a list of 1 to 1000 reports in increasing seq expected"),
        (#"{"epoch": "e", "reports": [{"seq": 0, "time": 5, "report": {"device": "d", "status": "done"}}]}"#, "reports[0].seq: a positive integer expected"),
        (#"{"epoch": "e", "reports": [{"seq": 1, "report": {"device": "d", "status": "done"}}]}"#, "reports[0].time: required"),
        (#"{"epoch": "e", "reports": [{"seq": 1, "time": 5, "report": {"device": "d", "status": "hacked"}}]}"#, "reports[0].report.status: one of"),
        (#"{"epoch": "e", "reports": [{"seq": 1, "time": 5, "school": "s", "report": {"device": "d", "status": "done"}}]}"#, "reports[0].school: unknown field"),
        (#"{"epoch": "e", "reports": [REPORT], "school": "other"}"#, "school: unknown field"),
    ])
    func forwardedReportsAreRefusedNamingTheField(_ body: String, _ message: String) {
        let body = body.replacingOccurrences(of: "REPORT", with: #"{"seq": 1, "time": 5, "report": {"device": "d", "status": "done"}}"#)
        expectUpdError(.corrupt, message, "\(body)") { try WireCoding.decode(ForwardedReports.self, from: Array(body.utf8)) }
    }

    @Test(arguments: [
        (#"{"limit": 5}"#, "items: required"),
        (#"{"items": []}"#, "items: a list of 1 to 3 contents expected"),
        (#"{"items": [{"hash": "HASH", "size": 1}, {"hash": "HASH", "size": 1}, {"hash": "HASH", "size": 1}, {"hash": "HASH", "size": 1}]}"#, "items: a list of 1 to 3 contents expected"),
        (#"{"items": [{"hash": "HASH", "size": 0}]}"#, "items[0].size: a size from 1 to 2^30 expected"),
        (#"{"items": [{"hash": "HASH", "size": 1}, {"hash": "nope", "size": 1}]}"#, "items[1].hash: a content hash expected"),
        (#"{"items": [{"hash": "HASH", "size": 1, "base": "HASH"}]}"#, "items[0].base: without base_size"),
        (#"{"items": [{"hash": "HASH", "size": 1, "base_size": 1}]}"#, "items[0].base_size: without base"),
        (#"{"items": [{"hash": "HASH", "size": 1, "base": null, "base_size": 1}]}"#, "items[0].base: a content hash expected"),
        (#"{"items": [{"hash": "HASH", "size": 1, "colour": 1}]}"#, "items[0].colour: unknown field"),
        (#"{"items": [7]}"#, "items[0]: an object expected"),
        (#"{"items": [{"hash": "HASH", "size": 1}], "after": [{"hash": "HASH", "size": 1, "base": "HASH", "base_size": 1}]}"#, "after[0].base: unknown field"),
        (#"{"items": [{"hash": "HASH", "size": 1}], "after": [{"hash": "HASH", "size": 1073741824}, {"hash": "HASH", "size": 1}]}"#, "after: contents of at most"),
        (#"{"items": [{"hash": "HASH", "size": 1}], "limit": -1}"#, "limit: a byte count expected"),
        (#"{"items": [{"hash": "HASH", "size": 1}], "limit": null}"#, "limit: a byte count expected"),
        (#"{"items": [{"hash": "HASH", "size": 1}], "device": "a b"}"#, "device: 1 to 128 printable characters"),
        (#"{"items": [{"hash": "HASH", "size": 1}], "priority": 1}"#, "priority: unknown field"),
    ])
    func batchRequestsAreRefusedNamingTheField(_ body: String, _ message: String) {
        let body = body.replacingOccurrences(of: "HASH", with: Self.hash.hex)
        expectUpdError(.corrupt, message, "\(body)") {
            try WireCoding.decode(BatchRequest.self, from: Array(body.utf8), userInfo: [BatchRequest.maxItemsKey: 3])
        }
    }

    @Test func anUnknownFieldsNameIsQuotedPrintableAndShort() {
        let body = #"{"device": "d", "status": "done", "\u001b[31m"# + String(repeating: "y", count: 200) + #"": 1}"#
        expectUpdError(.corrupt, "?[31myyy", "\(body)") { try WireCoding.decode(DeviceReport.self, from: Array(body.utf8)) }
        do {
            _ = try WireCoding.decode(DeviceReport.self, from: Array(body.utf8))
        } catch let error as UpdError {
            #expect(error.message.utf8.count < 100 && !error.message.contains("\u{1b}"), "\(error.message)")
        } catch {
            Issue.record("\(error)")
        }
    }
}
