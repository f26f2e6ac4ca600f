import Foundation

/// `HH:MM-HH:MM` in local time; a window whose end is before its start runs past midnight.
public struct TimeWindow: Sendable {
    let start: Int
    let end: Int

    /// Nil when the text is not `HH:MM-HH:MM`.
    public init?(parsing text: String) {
        func minutes(_ part: Substring) -> Int? {
            let hm = part.split(separator: ":")
            guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0...24).contains(h), (0..<60).contains(m),
                  h * 60 + m <= 1440 else { return nil }
            return h * 60 + m
        }
        let bounds = text.split(separator: "-")
        guard bounds.count == 2, let start = minutes(bounds[0]), let end = minutes(bounds[1]) else { return nil }
        self.start = start
        self.end = end
    }

    public func contains(_ date: Date) -> Bool {
        let c = Calendar.current.dateComponents([.hour, .minute], from: date)
        let now = c.hour! * 60 + c.minute!
        return start <= end ? (start <= now && now < end) : (now >= start || now < end)
    }
}
