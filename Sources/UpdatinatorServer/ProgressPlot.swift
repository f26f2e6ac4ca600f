import Foundation

/// A rollout's progress over time as an inline SVG: the running totals of devices done (and
/// failed) at the new version, as step lines from the first report to the last, against the
/// number of devices the rollout concerns. Self-contained: no script, no external asset.
struct ProgressPlot {
    typealias Point = (time: Int64, done: Int, failed: Int)
    let points: [Point]
    let devices: Int

    static let width = 640.0, height = 180.0, margin = 36.0

    var svg: String {
        let (w, h, m) = (Self.width, Self.height, Self.margin)
        guard let first = points.first, let last = points.last else {
            return "<p class=\"empty\">No device has reported the new version yet.</p>"
        }
        let top = max(devices, points.map { max($0.done, $0.failed) }.max() ?? 1, 1)
        let span = Double(max(last.time - first.time, 1))
        func x(_ time: Int64) -> Double { m + (w - 2 * m) * Double(time - first.time) / span }
        func y(_ count: Int) -> Double { h - m - (h - 2 * m) * Double(count) / Double(top) }
        func steps(_ value: (Point) -> Int) -> String {
            var coordinates = [String(format: "%.1f,%.1f", x(first.time), y(0))]
            var previous = 0
            for point in points {
                coordinates.append(String(format: "%.1f,%.1f", x(point.time), y(previous)))
                previous = value(point)
                coordinates.append(String(format: "%.1f,%.1f", x(point.time), y(previous)))
            }
            coordinates.append(String(format: "%.1f,%.1f", w - m, y(previous)))
            return coordinates.joined(separator: " ")
        }
        func date(_ time: Int64) -> String { DashboardPage.date(time, format: "yyyy-MM-dd HH:mm") }
        return """
            <svg class="progress" role="img" width="\(Int(w))" height="\(Int(h))" viewBox="0 0 \(Int(w)) \(Int(h))" \
            data-done="\(last.done)" data-failed="\(last.failed)" data-devices="\(devices)">
            <title>Devices done and failed over time: \(last.done) done, \(last.failed) failed of \(devices)</title>
            <line x1="\(m)" y1="\(h - m)" x2="\(w - m)" y2="\(h - m)" stroke="#888"/>
            <line x1="\(m)" y1="\(m)" x2="\(m)" y2="\(h - m)" stroke="#888"/>
            <line x1="\(m)" y1="\(y(devices))" x2="\(w - m)" y2="\(y(devices))" stroke="#bbb" stroke-dasharray="4 4"/>
            <text x="\(m - 4)" y="\(y(top) + 4)" text-anchor="end" font-size="11">\(top)</text>
            <text x="\(m - 4)" y="\(h - m + 4)" text-anchor="end" font-size="11">0</text>
            <text x="\(m)" y="\(h - m + 16)" font-size="11">\(date(first.time))</text>
            <text x="\(w - m)" y="\(h - m + 16)" text-anchor="end" font-size="11">\(date(last.time)) UTC</text>
            <polyline class="done" fill="none" stroke="#1a7f37" stroke-width="2" points="\(steps { $0.done })"/>
            <polyline class="failed" fill="none" stroke="#cf222e" stroke-width="2" points="\(steps { $0.failed })"/>
            </svg>
            """
    }
}
