internal import CLua
import Foundation
import Updatinator

/// The `upd` table: every primitive the command line uses, for scripts.
enum UpdLibrary {
    static func install(in state: LuaState) {
        let L = state.L
        lua_createtable(L, 0, 24)
        installManifests(in: state)
        installUpdates(in: state)
        installSystem(in: state)
        installPolicy(in: state)
        installDeployments(in: state)
        lua_setglobal(L, "upd")
    }

    /// Sets `upd[name]` (the table on top of the stack) to a new table filled by `fill`.
    static func submodule(_ name: String, in state: LuaState, _ fill: () -> Void) {
        lua_createtable(state.L, 0, 8)
        fill()
        lua_setfield(state.L, -2, name)
    }
}
