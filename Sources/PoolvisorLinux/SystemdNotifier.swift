import CSystemd
import Glibc
import PoolvisorCore

/// The supervisor's own sd_notify to its service manager, through libsystemd. Without NOTIFY_SOCKET
/// every call is a no-op, so the supervisor behaves the same in a terminal. A send blocks only while the
/// receiver's queue is full, which systemd (reading promptly, net.unix.max_dgram_qlen = 512) never lets
/// happen; STATUS= is coalesced to one datagram per loop iteration to keep the volume low regardless.
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

    /// Sends `notification` together with the current STATUS= line, in one datagram.
    func send(_ notification: SystemdNotification, status: String) {
        switch notification {
        case .ready: send("READY=1\nSTATUS=\(status)")
        case .stopping(let extend):
            send("STOPPING=1\nSTATUS=\(status)\nEXTEND_TIMEOUT_USEC=\(extend.nanosecondsClamped / 1000)")
        }
    }

    func status(_ line: String) { send("STATUS=" + line) }

    /// RELOADING=1 with the CLOCK_MONOTONIC time systemd (253+) uses to match it with the READY=1
    /// that ends the reload; systemd 252 ignores MONOTONIC_USEC and goes by RELOADING=1 alone.
    func reloading(status: String) {
        send("RELOADING=1\nMONOTONIC_USEC=\(MonotonicClock.now().nanoseconds / 1000)\nSTATUS=\(status)")
    }

    func watchdogPing() { send("WATCHDOG=1") }

    func send(_ text: String) {
        guard enabled else { return }
        _ = sd_notify(0, text)
    }
}
