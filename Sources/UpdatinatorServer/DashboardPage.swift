import Foundation

/// The dashboard's HTML: plain server-rendered pages with forms for the operators' actions,
/// no script and no external asset (school servers have no internet).
enum DashboardPage {
    /// What the page shows, as the management API gives it.
    struct Content {
        var summary: [String: Any]
        var rollouts: [[String: Any]]
        var failing: [[String: Any]]
        /// Devices enrolled and waiting for an operator, with their key fingerprints.
        var pending: [[String: Any]]
        var pins: [(device: String, image: String, version: String, since: Int64)]
        var log: [[String: Any]]
        var now: Int64
    }

    static func login(error: String?) -> String {
        page(title: "Sign in", body: """
            <h1>Updatinator school server</h1>
            \(error.map { "<p class=\"error\" id=\"login-error\">\(escape($0))</p>" } ?? "")
            <form method="post" action="/dashboard/login">
            <label>Operator token <input type="password" name="token" id="token" autocomplete="current-password" required></label>
            <button type="submit" id="sign-in">Sign in</button>
            </form>
            """)
    }

    static func main(_ content: Content) -> String {
        var body = "<h1>Updatinator school server</h1>\n<p class=\"muted\">As of \(escape(date(content.now))) UTC.</p>\n"
        body += "<h2>Rollouts</h2>\n" + content.rollouts.map(rollout).joined(separator: "\n")
        body += pending(content.pending)
        body += fleet(content.summary)
        body += failing(content.failing)
        body += pins(content.pins)
        body += log(content.log)
        return page(title: "Fleet", body: body)
    }

    static func rollout(_ r: [String: Any]) -> String {
        let image = r["image"] as? String ?? ""
        let state = r["state"] as? String ?? "active"
        let counts = r["counts"] as? [String: Int] ?? [:]
        let policy = r["policy"] as? [String: Any] ?? [:]
        var lines = ["<section class=\"rollout\" id=\"rollout-\(escape(image))\" data-state=\"\(escape(state))\">",
                     "<h3>\(escape(image)) → \(escape(r["version"] as? String ?? "no version"))</h3>",
                     "<p>State: <strong class=\"state \(escape(state))\">\(escape(state))</strong>"
                        + ((r["reason"] as? String).map { " — \(escape($0))" } ?? "") + "</p>"]
        var said = [String]()
        if let stage = policy["stage"] as? Int64 {
            said.append("stage \(stage)" + ((policy["stages"] as? Int64).map { " of \($0)" } ?? ""))
        }
        if let percent = policy["percent"] as? Int64 { said.append("\(percent) % of devices") }
        if let stage = r["stage"] as? Int, stage > 0 { said.append("advanced \(stage) stage\(stage == 1 ? "" : "s") by operators") }
        if !said.isEmpty { lines.append("<p>Policy: \(escape(said.joined(separator: ", ")))</p>") }
        if let halted = policy["halted"] as? String {
            lines.append("<p class=\"error\">The policy halted it: \(escape(halted))</p>")
        }
        if let error = r["policy_error"] as? String { lines.append("<p class=\"error\">\(escape(error))</p>") }
        lines.append("<p class=\"counts\">\(counts["done"] ?? 0) done, \(counts["failed"] ?? 0) failed, \(counts["moving"] ?? 0) moving, "
                     + "of \(counts["devices"] ?? 0) devices</p>")
        let points = (r["progress"] as? [[Int64]] ?? []).map { (time: $0[0], done: Int($0[1]), failed: Int($0[2])) }
        lines.append(ProgressPlot(points: points, devices: counts["devices"] ?? 0).svg)
        let action = "/dashboard/rollouts/\(escape(path(image)))"
        lines.append("<div class=\"actions\">")
        if state == "active" {
            lines.append(form(action + "/pause", id: "pause-\(image)", label: "Pause", reason: true))
            lines.append(form(action + "/halt", id: "halt-\(image)", label: "Halt", reason: true))
            lines.append(form(action + "/advance", id: "advance-\(image)", label: "Advance a stage", reason: false))
        } else {
            lines.append(form(action + "/resume", id: "resume-\(image)", label: "Resume", reason: false))
        }
        lines.append("</div></section>")
        return lines.joined(separator: "\n")
    }

    static func fleet(_ summary: [String: Any]) -> String {
        let versions = summary["by_version"] as? [[String: Any]] ?? []
        let statuses = summary["by_status"] as? [String: Any] ?? [:]
        var html = "<h2>Fleet</h2>\n<p>\(summary["device_count"] as? Int ?? 0) devices.</p>\n"
        html += "<table id=\"by-version\"><tr><th>Image</th><th>Version</th><th>Devices</th></tr>\n"
        for row in versions {
            html += "<tr><td>\(escape(row["image"] as? String ?? "?"))</td><td>\(escape(row["version"] as? String ?? "?"))</td>"
                + "<td>\(row["devices"] as? Int64 ?? 0)</td></tr>\n"
        }
        html += "</table>\n<table id=\"by-status\"><tr><th>Status</th><th>Devices</th></tr>\n"
        for (status, count) in statuses.sorted(by: { $0.key < $1.key }) {
            html += "<tr><td>\(escape(status))</td><td>\(count)</td></tr>\n"
        }
        return html + "</table>\n"
    }

    static func failing(_ devices: [[String: Any]]) -> String {
        var html = "<h2>Failing devices</h2>\n"
        guard !devices.isEmpty else { return html + "<p>None.</p>\n" }
        html += "<table id=\"failing\"><tr><th>Device</th><th>Moving to</th><th>Code</th><th>Last error</th><th>When</th></tr>\n"
        for d in devices {
            let target = [d["target_image"], d["target_version"]].compactMap { $0 as? String }.joined(separator: " ")
            html += "<tr><td>\(escape(d["device"] as? String ?? ""))</td><td>\(escape(target))</td><td>\(escape(d["code"] as? String ?? ""))</td>"
                + "<td>\(escape(d["message"] as? String ?? ""))</td><td>\(escape((d["last_report"] as? Int64).map { date($0) } ?? ""))</td></tr>\n"
        }
        return html + "</table>\n"
    }

    static func pending(_ devices: [[String: Any]]) -> String {
        var html = "<h2>Devices waiting for admission</h2>\n"
        guard !devices.isEmpty else { return html + "<p>None.</p>\n" }
        html += "<p class=\"muted\">Admit a device only when its key matches the one it shows.</p>\n"
        html += "<table id=\"pending\"><tr><th>Device</th><th>Key</th><th>Address</th><th>First seen</th><th></th></tr>\n"
        for d in devices {
            let device = d["device"] as? String ?? ""
            html += "<tr><td>\(escape(device))</td><td>\(escape(d["key_fingerprint"] as? String ?? ""))</td><td>\(escape(d["address"] as? String ?? ""))</td>"
                + "<td>\(escape((d["first_seen"] as? Int64).map { date($0) } ?? ""))</td><td>"
                + form("/dashboard/devices/\(escape(path(device)))/admit", id: "admit-\(device)", label: "Admit", reason: false)
                + form("/dashboard/devices/\(escape(path(device)))/reject", id: "reject-\(device)", label: "Reject", reason: false)
                + "</td></tr>\n"
        }
        return html + "</table>\n"
    }

    static func pins(_ pins: [(device: String, image: String, version: String, since: Int64)]) -> String {
        var html = "<h2>Pinned devices</h2>\n<table id=\"pins\"><tr><th>Device</th><th>Held at</th><th>Since</th><th></th></tr>\n"
        for pin in pins {
            html += "<tr><td>\(escape(pin.device))</td><td>\(escape(pin.image)) \(escape(pin.version))</td><td>\(escape(date(pin.since)))</td><td>"
                + form("/dashboard/devices/\(escape(path(pin.device)))/release", id: "release-\(pin.device)", label: "Release", reason: false)
                + "</td></tr>\n"
        }
        html += "</table>\n"
        html += """
            <form method="post" action="/dashboard/pin" id="pin-form">
            <label>Device <input name="device" required></label> <label>Image <input name="image" required></label>
            <label>Version <input name="version" required></label> <button type="submit">Pin</button>
            </form>

            """
        return html
    }

    static func log(_ entries: [[String: Any]]) -> String {
        var html = "<h2>Operator actions</h2>\n<ul id=\"log\">\n"
        for e in entries {
            html += "<li>\(escape((e["time"] as? Int64).map { date($0) } ?? "")): \(escape(e["action"] as? String ?? "")) "
                + "\(escape(e["target"] as? String ?? ""))\((e["detail"] as? String).map { " — " + escape($0) } ?? "")</li>\n"
        }
        return html + "</ul>\n"
    }

    static func form(_ action: String, id: String, label: String, reason: Bool) -> String {
        "<form method=\"post\" action=\"\(action)\">"
            + (reason ? "<input name=\"reason\" placeholder=\"reason\">" : "")
            + "<button type=\"submit\" id=\"\(escape(id))\">\(escape(label))</button></form>"
    }

    static func page(title: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(escape(title)) — Updatinator</title>
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <style>
        body { font-family: sans-serif; margin: 1.5em auto; max-width: 60em; color: #222; }
        table { border-collapse: collapse; margin: 0.5em 0 1em; } td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
        .rollout { border: 1px solid #ccc; border-radius: 6px; padding: 0.5em 1em; margin: 0.5em 0 1em; }
        .state.active { color: #1a7f37; } .state.paused { color: #9a6700; } .state.halted, .error { color: #cf222e; }
        .actions form { display: inline-block; margin-right: 1em; } .muted { color: #666; }
        </style></head>
        <body>
        \(body)
        </body></html>

        """
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A path component, percent-encoded.
    static func path(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? component
    }

    /// A time in UTC, to the second (or in `format`).
    static func date(_ time: Int64, format pattern: String = "yyyy-MM-dd HH:mm:ss") -> String {
        let format = DateFormatter()
        format.dateFormat = pattern
        format.timeZone = TimeZone(identifier: "UTC")
        return format.string(from: Date(timeIntervalSince1970: TimeInterval(time)))
    }
}
