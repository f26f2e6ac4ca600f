import Updatinator
import UpdatinatorLua

extension CheckRequest {
    /// The server policy's `device` table: every field of the request, as Lua values, and
    /// `address`, the client's IP (replacing any the device sent).
    public func policyTable(address: String?) -> [String: LuaValue] {
        var table = fields.mapValues(\.luaValue)
        table["address"] = address.map { .string($0) }
        return table
    }
}
