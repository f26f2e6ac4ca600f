import Foundation
import Updatinator

/// Whether a device may speak to the server: its key, once it enrolled, and what the
/// admission rule or an operator made of it.
public enum AdmissionState: String, Sendable, CaseIterable {
    /// Enrolled, waiting for an operator (`fleet admit`, `fleet reject`).
    case pending
    /// Gets decisions and batches; its reports count and its peer URL is listed.
    case admitted
    /// Refused by an operator: it gets nothing until admitted.
    case rejected
}

/// A device's key and admission, as the inventory keeps them.
public struct Enrolment: Sendable, Equatable {
    public let key: PublicKey
    public var state: AdmissionState
}

/// Who enrols with a server: its devices (laptops), or the school servers below it, each in a
/// table of its own so that schools never count as devices.
public enum Enrollee: String, Sendable {
    case device, school

    var table: String { self == .device ? "devices" : "schools" }
    var column: String { rawValue }
}

extension FleetInventory {
    /// Every enrolled device's (or school's) key and admission: what the server loads once and keeps in memory.
    public func enrolments(of kind: Enrollee = .device) throws -> [String: Enrolment] {
        try database.withLock { db in
            var enrolments = [String: Enrolment]()
            for row in try db.query("SELECT \(kind.column), public_key, admission FROM \(kind.table) WHERE public_key IS NOT NULL") {
                guard let device = row[0].text, let key = row[1].text.flatMap({ PublicKey(hex: $0) }),
                      let state = row[2].text.flatMap({ AdmissionState(rawValue: $0) }) else { continue }
                enrolments[device] = Enrolment(key: key, state: state)
            }
            return enrolments
        }
    }

    /// Records a device's first signed request: its key, its admission, its address. A row the
    /// device had before it had a key (an inventory older than device keys) is kept and bound to it.
    /// An id that already has a key keeps it (another server process sharing the inventory may
    /// have enrolled it first): the enrolment stored is returned, whoever made it.
    @discardableResult
    public func enrol(_ device: String, _ enrolment: Enrolment, address: String?, now: Int64, kind: Enrollee = .device) throws -> Enrolment {
        try database.withLock { db in
            try db.transaction {
                let table = kind.table
                try db.query("""
                    INSERT INTO \(table) (\(kind.column), address, first_seen, last_seen, public_key, key_fingerprint, admission)
                    VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)
                    ON CONFLICT (\(kind.column)) DO UPDATE SET public_key = coalesce(\(table).public_key, ?4),
                        key_fingerprint = coalesce(\(table).key_fingerprint, ?5), admission = coalesce(\(table).admission, ?6),
                        address = coalesce(?2, \(table).address), last_seen = ?3
                    """, [.text(device), text(address), .integer(now), .text(enrolment.key.hex), .text(enrolment.key.keyID),
                          .text(enrolment.state.rawValue)])
                let row = try db.query("SELECT public_key, admission FROM \(table) WHERE \(kind.column) = ?", [.text(device)]).first
                guard let key = row?[0].text.flatMap({ PublicKey(hex: $0) }), let state = row?[1].text.flatMap({ AdmissionState(rawValue: $0) }) else {
                    throw UpdError(.corrupt, "\(kind.rawValue) \(device): its enrolment could not be read back")
                }
                return Enrolment(key: key, state: state)
            }
        }
    }

    /// Whether a request's nonce is new to every server process sharing the inventory; nonces
    /// older than twice the window are forgotten.
    func firstUse(ofNonce nonce: String, now: Int64, window: Int64) throws -> Bool {
        try database.withLock { db in
            try db.query("DELETE FROM nonces WHERE time < ?", [.integer(now - 2 * window)])
            return !(try db.query("INSERT INTO nonces (nonce, time) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
                                  [.text(nonce), .integer(now)])).isEmpty
        }
    }


    /// Sets an enrolled device's admission.
    public func setAdmission(_ device: String, _ state: AdmissionState, kind: Enrollee = .device) throws {
        try database.withLock { db in
            try db.query("UPDATE \(kind.table) SET admission = ? WHERE \(kind.column) = ?", [.text(state.rawValue), .text(device)])
        }
        forgetCachedCounts()
    }
}
