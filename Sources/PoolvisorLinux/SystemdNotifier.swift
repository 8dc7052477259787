import CSystemd
import Glibc
import PoolvisorCore

/// The supervisor's own sd_notify to its service manager, through libsystemd. Without NOTIFY_SOCKET
/// every call is a no-op, so the supervisor behaves the same in a terminal.
struct SystemdNotifier {
    let enabled: Bool
    /// Half of WATCHDOG_USEC when systemd expects watchdog pings.
    let watchdogInterval: Duration?

    init() {
        enabled = getenv("NOTIFY_SOCKET") != nil
        var usec: UInt64 = 0
        if sd_watchdog_enabled(0, &usec) > 0, usec > 0 {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    func send(_ notification: SystemdNotification) {
        switch notification {
        case .ready: send("READY=1")
        case .status(let line): send("STATUS=" + line)
        case .stopping(let extend):
            send("STOPPING=1\nEXTEND_TIMEOUT_USEC=\(extend.nanosecondsClamped / 1000)")
        }
    }

    func watchdogPing() { send("WATCHDOG=1") }

    func send(_ text: String) {
        guard enabled else { return }
        _ = sd_notify(0, text)
    }
}
