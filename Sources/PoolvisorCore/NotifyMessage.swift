/// One sd_notify datagram from a worker, e.g. "READY=1\nSTATUS=processing 3 jobs".
/// The same lines a service sends to systemd; unknown fields are ignored, as systemd does.
public struct NotifyMessage: Sendable, Equatable {
    public var ready = false
    public var stopping = false
    public var watchdogPing = false
    /// WATCHDOG=trigger: the worker asks to be treated as hung.
    public var watchdogTrigger = false
    public var status: String?
    /// BUSY=1 / BUSY=0: whether the worker is in the middle of a job.
    public var busy: Bool?

    public init() {}

    public init(parsing text: String) {
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq]
            let value = line[line.index(after: eq)...]
            switch key {
            case "READY": ready = value == "1"
            case "STOPPING": stopping = value == "1"
            case "WATCHDOG":
                if value == "1" { watchdogPing = true } else if value == "trigger" { watchdogTrigger = true }
            case "STATUS": status = String(value)
            case "BUSY": busy = value == "1" ? true : value == "0" ? false : busy
            default: break
            }
        }
    }
}
