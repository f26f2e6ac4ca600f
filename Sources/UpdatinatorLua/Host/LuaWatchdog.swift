import Foundation
import Updatinator

/// Ends what no hook can stop: a call into Lua that stays inside a C function (a backtracking
/// `string.find`, a sort of a huge table) past its time limit plus `grace`, or a script still
/// running `grace` seconds after it was asked to stop (SIGTERM reached it inside such a function,
/// or inside a host function that does not look at interrupts). It calls `overdue` with the
/// reason, on its own thread; the front end prints it and ends the process, which is safe
/// because every change the host makes is resumable (the apply's journal).
public final class LuaWatchdog: Sendable {
    private let stopAsked = Locked<Double?>(nil)

    public init(watching interrupter: LuaInterrupter, grace: Double, overdue: @escaping @Sendable (String) -> Void) {
        let stopAsked = self.stopAsked
        Thread.detachNewThread {
            while true {
                Thread.sleep(forTimeInterval: 0.1)
                if let past = interrupter.secondsPastDeadline, past > grace {
                    let limit = interrupter.timeLimit.map { "\($0)" } ?? "?"
                    overdue("the script ran past its time limit (\(limit) s) inside a function that cannot be interrupted")
                    return
                }
                if let asked = stopAsked.withLock({ $0 }), ProcessInfo.processInfo.systemUptime - asked > grace {
                    overdue("the script did not stop within \(grace) s of the request to stop")
                    return
                }
            }
        }
    }

    /// A stop was asked for: from now, the script has `grace` seconds to end.
    public func stopRequested() {
        stopAsked.withLock { if $0 == nil { $0 = ProcessInfo.processInfo.systemUptime } }
    }
}
