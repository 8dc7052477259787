import Glibc
import Logging
import PoolvisorLinux

/// swift-log handler for the supervisor's own lines, on stderr. In a terminal: a time stamp and a
/// `poolvisor |` prefix aligned with the workers' lines. Under systemd (stderr is the journal stream):
/// a `<N>` syslog priority prefix and no time stamp, since journald adds its own.
public struct ConsoleLogHandler: LogHandler {
    public enum Style: Sendable { case terminal(colour: Bool), journal, plain }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let style: Style

    public init(level: Logger.Level, style: Style) {
        self.logLevel = level
        self.style = style
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line: String
        switch style {
        case .journal:
            line = "<\(ConsoleLogHandler.syslogPriority(event.level))>\(event.message)"
        case .plain:
            line = "\(ConsoleLogHandler.timestamp()) poolvisor \(event.level): \(event.message)"
        case .terminal(let colour):
            let tag = event.level >= .warning ? " \(event.level.rawValue.uppercased()):" : ""
            if colour {
                let c = event.level >= .error ? "31" : event.level >= .warning ? "33" : "2"
                line = "\u{1B}[2m\(ConsoleLogHandler.timestamp()) poolvisor |\u{1B}[0m\u{1B}[\(c == "2" ? "0" : c)m\(tag) \(event.message)\u{1B}[0m"
            } else {
                line = "\(ConsoleLogHandler.timestamp()) poolvisor |\(tag) \(event.message)"
            }
        }
        line += "\n"
        writeAll(2, Array(line.utf8))
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Local wall-clock time, HH:MM:SS.mmm.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        localtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let ms = ts.tv_nsec / 1_000_000
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(msText)"
    }
}
