import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// The supervisor's own sd_notify to its service manager: datagrams to $NOTIFY_SOCKET, the protocol
/// systemd documents in sd_notify(3), spoken directly (libsystemd and the six libraries it loads would
/// cost about 1 MB of RSS and start-up time for two tiny functions). Without NOTIFY_SOCKET every call
/// is a no-op, so the supervisor behaves the same in a terminal.
///
/// The loop must not hang on a service manager that stops reading: STATUS= and WATCHDOG=1 are sent
/// without waiting (a STATUS= that does not fit is sent again at the next change; a missed ping is
/// followed by the next), while READY=1, RELOADING=1 and STOPPING=1, which systemd acts on, may wait
/// up to a second for room.
public final class SystemdNotifier {
    private let socket: String?
    private let fd: Int32
    /// Half of WATCHDOG_USEC when systemd expects watchdog pings (and WATCHDOG_PID, if set, is us).
    public let watchdogInterval: Duration?

    public init() {
        let path = getenv("NOTIFY_SOCKET").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        socket = path.flatMap { $0.hasPrefix("/") || $0.hasPrefix("@") ? $0 : nil }
        fd = socket == nil ? -1 : Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd >= 0 {
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        watchdogInterval = Self.watchdog()
    }

    deinit { if fd >= 0 { close(fd) } }

    var enabled: Bool { fd >= 0 }

    /// Sends `notification` together with the current STATUS= line, in one datagram.
    public func send(_ notification: SystemdNotification, status: String) {
        switch notification {
        case .extendStartTimeout(let extend): send("EXTEND_TIMEOUT_USEC=\(extend.nanosecondsClamped / 1000)\nSTATUS=\(status)", wait: true)
        case .ready: send("READY=1\nSTATUS=\(status)", wait: true)
        case .reloading(let file): reloading(status: "reloading \(file)")
        case .stopping(let extend):
            send("STOPPING=1\nSTATUS=\(status)\nEXTEND_TIMEOUT_USEC=\(extend.nanosecondsClamped / 1000)", wait: true)
        }
    }

    /// RELOADING=1 with the CLOCK_MONOTONIC time systemd (253+) uses to match it with the READY=1
    /// that ends the reload; systemd 252 ignores MONOTONIC_USEC and goes by RELOADING=1 alone.
    func reloading(status: String) {
        send("RELOADING=1\nMONOTONIC_USEC=\(MonotonicClock.now().nanoseconds / 1000)\nSTATUS=\(status)", wait: true)
    }

    /// RELOADING=1 before an in-place upgrade; the new image sends READY=1 once it has taken over.
    public func handingOver(to binary: String) {
        reloading(status: "upgrading: handing over to \(binary)")
    }

    /// READY=1 from the new image after an in-place upgrade.
    public func takenOver(status: String) {
        send("READY=1\nMONOTONIC_USEC=\(MonotonicClock.now().nanoseconds / 1000)\nSTATUS=\(status)", wait: true)
    }

    /// Returns false when the message did not fit in the service manager's queue: send it again later.
    /// `wait`: for the last word before exiting, which has no later.
    @discardableResult
    public func status(_ line: String, wait: Bool = false) -> Bool { send("STATUS=" + line, wait: wait) }

    public func watchdogPing() { send("WATCHDOG=1", wait: false) }

    @discardableResult
    private func send(_ text: String, wait: Bool) -> Bool {
        guard fd >= 0, let socket else { return true }
        var bytes = Array(text.utf8)
        let rc = bytes.withUnsafeMutableBytes { cshim_send_datagram(fd, socket, $0.baseAddress, $0.count, wait ? 0 : 1) }
        return rc == 0
    }

    /// As sd_watchdog_enabled(3): WATCHDOG_USEC, for this process if WATCHDOG_PID says so or is unset.
    private static func watchdog() -> Duration? {
        guard let usec = getenv("WATCHDOG_USEC").flatMap({ UInt64(String(cString: $0)) }), usec > 0 else { return nil }
        if let pid = getenv("WATCHDOG_PID").flatMap({ Int32(String(cString: $0)) }), pid != getpid() { return nil }
        return .microseconds(Int64(usec / 2))
    }
}
