import CShim
import Glibc
import PoolvisorCore

/// Under systemd, each lifecycle event is also a structured journal record, sent with journald's
/// native protocol (one datagram of `FIELD=value` lines to /run/systemd/journal/socket, as
/// sd_journal_send does): a `MESSAGE_ID` per event type, so `journalctl MESSAGE_ID=…` finds every
/// OOM kill of the week, and `POOLVISOR_EVENT`, `POOLVISOR_POOL`, `POOLVISOR_REPLICA`,
/// `POOLVISOR_PID`. Never blocks: a datagram journald has no room for is dropped and counted.
public final class JournalEvents {
    static let socketPath = "/run/systemd/journal/socket"

    private let fd: Int32
    /// Records journald had no room for.
    public private(set) var dropped = 0

    /// nil unless poolvisor's stderr is the journal and journald's socket is there.
    public init?() {
        guard JournalStreams.stderrIsJournal(), access(Self.socketPath, W_OK) == 0 else { return nil }
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
    }

    deinit { close(fd) }

    /// The 128-bit id of an event type, as in systemd's catalog: fixed, documented in the README.
    public static func messageID(_ kind: LifecycleEvent.Kind) -> String {
        let index = LifecycleEvent.Kind.allCases.firstIndex(of: kind)!
        let hex = Array("0123456789abcdef")
        return "7f3e2a9c5b1d4e8fa6c0d2b4e6f81a" + String([hex[index / 16 % 16], hex[index % 16]])
    }

    public func send(_ event: LifecycleEvent, message: String) {
        var fields: [(String, String)] = [
            ("MESSAGE", message), ("MESSAGE_ID", Self.messageID(event.kind)), ("PRIORITY", String(Self.priority(event.kind))),
            ("SYSLOG_IDENTIFIER", "poolvisor"), ("POOLVISOR_EVENT", event.kind.rawValue),
        ]
        if let pool = event.pool { fields.append(("POOLVISOR_POOL", pool)) }
        if let replica = event.replica { fields.append(("POOLVISOR_REPLICA", String(replica))) }
        if let pid = event.pid { fields.append(("POOLVISOR_PID", String(pid))) }
        if let detail = event.detail { fields.append(("POOLVISOR_DETAIL", detail)) }
        // One line per field: a value's newlines would start a field of their own.
        var text = ""
        for (key, value) in fields { text += key + "=" + value.map { $0 == "\n" ? " " : $0 } + "\n" }
        var bytes = Array(text.utf8)
        let rc = bytes.withUnsafeMutableBytes { cshim_send_datagram(fd, Self.socketPath, $0.baseAddress, $0.count, 1) }
        if rc != 0 { dropped += 1 }
    }

    /// syslog priorities: exits, kills and failures are warnings, the rest notices or info.
    static func priority(_ kind: LifecycleEvent.Kind) -> Int {
        switch kind {
        case .workerOOMKilled, .workerKilled, .probeFailed, .reloadRefused, .jobFailed, .supervisorUpgradeRefused: 4
        case .workerStopped, .workerRestarting, .workerNotReady: 5
        case .supervisorStarting, .supervisorReady, .supervisorStopping, .poolScaled, .rolloutStarted, .rolloutDone, .reloadApplied,
            .jobSucceeded, .fleetChanged, .supervisorUpgraded:
            5
        case .workerStarted, .workerReady, .workerBusy, .workerIdle, .workerDraining, .rolloutProgressed, .jobStarted: 6
        }
    }
}
