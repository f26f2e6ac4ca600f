import Logging

/// The servers' log lines (swift-log) when standard error is the journal: one line each,
/// `<P>LABEL: message`, with the priority of its level and no time stamp (the journal keeps one).
struct JournalLogHandler: LogHandler {
    let label: String
    var logLevel = Logger.Level.info
    var metadata = Logger.Metadata()

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata more: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        let all = metadata.merging(more ?? [:]) { $1 }
        let fields = all.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        let priority: Console.Priority = switch level {
        case .critical, .error: .error
        case .warning: .warning
        default: .info
        }
        Console.log(priority, "\(label): \(message)\(fields)")
    }
}
