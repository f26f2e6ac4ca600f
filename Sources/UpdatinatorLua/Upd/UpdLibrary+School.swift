internal import CLua
import Foundation
import Updatinator

/// What a server policy may ask of its school server: the repository it serves and the fleet
/// inventory. The school server implements it; `LuaState.installSchool` exposes it as
/// `upd.repo`, `upd.fleet` and `upd.rollout`.
public protocol SchoolView: AnyObject {
    /// The images the repository holds, sorted.
    func images() throws -> [String]
    /// The versions of an image, oldest first.
    func versions(of image: String) throws -> [String]
    /// The version a channel names for the image, or without a channel the newest version.
    func latest(image: String, channel: String?) throws -> String?
    /// How many devices match every filter (field names from `FleetFilter.names`).
    func count(_ filter: [String: String]) throws -> Int
    /// Peer URLs of devices at the image and version, nearest to `near` first.
    func peers(image: String, version: String, near: String?, prefix: Int, limit: Int) throws -> [String]
    /// What operators decided for the image's rollout.
    func rollout(image: String) throws -> RolloutControl
}

/// An image's rollout as operators set it: `active`, `paused` or `halted` (with their reason),
/// and how many stages they advanced the rollout of `stageVersion` (0 when they did not).
public struct RolloutControl: Sendable, Equatable {
    public var state: String
    public var reason: String?
    public var stage: Int
    public var stageVersion: String?

    public init(state: String, reason: String?, stage: Int, stageVersion: String?) {
        self.state = state
        self.reason = reason
        self.stage = stage
        self.stageVersion = stageVersion
    }
}

extension LuaState {
    /// Adds the server-side view (`upd.repo`, `upd.fleet`, `upd.rollout`) to this state's `upd`.
    public func installSchool(_ view: SchoolView) {
        lua_getglobal(L, "upd")
        UpdLibrary.installSchool(in: self, view: view)
        lua_settop(L, -2)
    }
}

extension UpdLibrary {
    static func installSchool(in state: LuaState, view: SchoolView) {
        submodule("repo", in: state) {
            state.setFunction("images") { call in
                call.results(.array(try view.images().map { .string($0) }))
            }
            state.setFunction("versions") { call in
                call.results(.array(try view.versions(of: try call.string(1)).map { .string($0) }))
            }
            state.setFunction("latest") { call in
                let image = try call.string(1)
                let channel = call.isNil(2) ? nil : try call.string(2)
                return call.results(try view.latest(image: image, channel: channel).map { .string($0) } ?? .nil)
            }
        }
        submodule("fleet", in: state) {
            state.setFunction("count") { call in
                let options = try call.options(1, allowed: Set(FleetFilter.names))
                var filter = [String: String]()
                for key in FleetFilter.names { if let value = try options.string(key) { filter[key] = value } }
                return call.results(.integer(Int64(try view.count(filter))))
            }
            state.setFunction("peers") { call in
                let options = try call.options(1, allowed: ["image", "version", "near", "prefix", "limit"])
                guard let image = try options.string("image"), let version = try options.string("version") else {
                    throw call.argumentError(1, "options 'image' and 'version' are required")
                }
                let peers = try view.peers(image: image, version: version, near: try options.string("near"),
                                           prefix: Int(try options.integer("prefix") ?? 24), limit: Int(try options.integer("limit") ?? 4))
                return call.results(.array(peers.map { .string($0) }))
            }
        }
        submodule("rollout", in: state) {
            state.setFunction("bucket") { call in
                call.results(.integer(Int64(RolloutBucket.of(device: try call.string(1), salt: call.isNil(2) ? "" : try call.string(2)))))
            }
            state.setFunction("state") { call in
                let control = try view.rollout(image: try call.string(1))
                var table: [String: LuaValue] = ["state": .string(control.state), "stage": .integer(Int64(control.stage))]
                table["reason"] = control.reason.map { .string($0) }
                table["stage_version"] = control.stageVersion.map { .string($0) }
                return call.results(.table(table))
            }
        }
    }
}

/// The device fields that `upd.fleet.count` filters on.
public enum FleetFilter {
    public static let names = ["channel", "image", "status", "target_image", "target_version", "version"]
}
