internal import CLua
import Foundation
import Updatinator

extension UpdLibrary {
    static func installSystem(in state: LuaState) {
        submodule("system", in: state) {
            state.setFunction("free_bytes") { call in
                call.results(.integer(Int64(try FilesystemSpace(path: try call.string(1)).free)))
            }
            state.setFunction("on_ac_power") { call in
                call.results(.boolean(PowerSupply.read(call.state.options.powerSupplyDirectory).onACPower))
            }
            state.setFunction("battery_percent") { call in
                call.results(PowerSupply.read(call.state.options.powerSupplyDirectory).batteryPercent.map { .integer(Int64($0)) } ?? .nil)
            }
            state.setFunction("device_id") { call in
                call.results(.string(try call.state.deviceID()))
            }
            // The front end reboots once the tick is over, after its reports are sent.
            state.setFunction("request_reboot") { call in
                call.state.rebootRequested = true
                return 0
            }
        }
        submodule("time", in: state) {
            state.setFunction("now") { call in
                call.results(.number(call.state.now))
            }
            state.setFunction("in_window") { call in
                let text = try call.string(1)
                guard let window = TimeWindow(parsing: text) else { throw call.argumentError(1, "\"HH:MM-HH:MM\" expected, got \"\(text)\"") }
                let when = Date(timeIntervalSince1970: call.isNil(2) ? call.state.now : try call.number(2))
                return call.results(.boolean(window.contains(when)))
            }
        }
        state.setFunction("sleep") { call in
            let seconds = try call.number(1)
            guard seconds >= 0 else { throw call.argumentError(1, "seconds must not be negative") }
            // Wakes at the end, at the call's deadline, or when interrupted; the trampoline then
            // ends the call if it must stop.
            let state = call.state
            let end = Double(CLua_now_ns()) + seconds * 1e9
            let wake = DispatchSemaphore(value: 0)
            state.whileWaiting(cancel: { wake.signal() }) {
                while !state.mustStop() {
                    let now = Double(CLua_now_ns())
                    guard now < end else { break }
                    let deadline = state.deadline
                    let until = deadline == 0 ? end : min(end, Double(deadline))
                    _ = wake.wait(timeout: .now() + .nanoseconds(Int(min(max(until - now, 0), 1e9)) + 1))
                }
            }
            return 0
        }
        submodule("state", in: state) {
            state.setFunction("get") { call in
                call.results(try call.state.policyState().get(try call.string(1)))
            }
            state.setFunction("set") { call in
                let key = try call.string(1)
                let value = call.state.value(at: 2, on: call.L)
                if case .opaque(let type) = value { throw call.argumentError(2, "a \(type) cannot be stored") }
                try call.state.policyState().set(key, value)
                return 0
            }
        }
        submodule("log", in: state) {
            for level in ["info", "warn", "error"] {
                state.setFunction(level) { call in
                    let parts = try (1...max(1, call.argumentCount)).map { try call.string($0) }
                    call.state.log(level, parts.joined(separator: " "))
                    return 0
                }
            }
        }
    }
}

/// The machine's power state from /sys/class/power_supply (or the directory the host names).
struct PowerSupply {
    var onACPower = true
    var batteryPercent: Int?

    static func read(_ directory: String) -> PowerSupply {
        func field(_ supply: String, _ name: String) -> String? {
            (try? String(contentsOfFile: "\(directory)/\(supply)/\(name)", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var result = PowerSupply()
        var mainsOnline = false, hasBattery = false
        for supply in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            switch field(supply, "type") {
            case "Mains", "USB":
                if field(supply, "online") == "1" { mainsOnline = true }
            case "Battery":
                hasBattery = true
                if let capacity = field(supply, "capacity").flatMap(Int.init) { result.batteryPercent = capacity }
            default:
                break
            }
        }
        // No battery: a desktop or server, always on mains.
        result.onACPower = !hasBattery || mainsOnline
        return result
    }
}
