import CShim
import Glibc
import PoolvisorSystem

/// Under systemd, each worker's stdout and stderr are a stream of its own straight into journald, as
/// systemd connects a service's: no pipe and no copy through the supervisor, and the loop never waits
/// for the journal. The stream is tagged with the pool's name (`journalctl -u poolvisor -t kb`); journald
/// takes `_PID` and `_COMM` from the worker itself, and poolvisor logs which pid is which replica.
///
/// The stream header is written here rather than by `sd_journal_stream_fd`, to fill in the unit name
/// that function leaves empty: journald trusts it from a root peer, so a worker that exits before
/// journald has read its last lines (a crash loop) still shows under `journalctl -u` (measured in
/// scripts/bench-journal: 35 of 200 such lines without it, 200 of 200 with it).
public struct JournalStreams {
    static let socketPath = "/run/systemd/journal/stdout"

    /// The systemd unit poolvisor runs in, e.g. `poolvisor.service`, or "" when not in one.
    public let unit: String

    /// Streams when the supervisor's own stderr is the journal (systemd set JOURNAL_STREAM to it) and
    /// journald's stdout socket exists; nil in a terminal or under anything else.
    public static func detect() -> JournalStreams? {
        guard Self.stderrIsJournal(), access(socketPath, W_OK) == 0 else { return nil }
        return JournalStreams(unit: ownUnit())
    }

    /// The journal when systemd connected stderr to it (JOURNAL_STREAM names stderr's device:inode).
    public static func stderrIsJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return value == "\(st.st_dev):\(st.st_ino)"
    }
    /// A new stream for a worker of `pool`; the caller hands it to the worker and closes its copy.
    public func open(pool: String) -> Result<Int32, SystemError> {
        // identifier, unit, priority (info), level prefix ("<3>" at the start of a line sets the
        // priority), forward to syslog, to kmsg, to the console.
        let header = "\(pool)\n\(unit)\n6\n1\n0\n0\n0\n"
        let fd = header.withCString { cshim_journal_stream(Self.socketPath, $0, strlen($0)) }
        return fd >= 0 ? .success(fd) : .failure(SystemError("connect to journald (\(Self.socketPath))", errno: -fd))
    }

    /// From /proc/self/cgroup: the path component that names a unit, the innermost one
    /// (`0::/system.slice/poolvisor@a.service` → `poolvisor@a.service`; the v1 `name=systemd` line on
    /// hybrid hosts). A leaf below the unit (delegation) is skipped.
    static func ownUnit() -> String {
        guard case .success(let text) = RegularFile.read("/proc/self/cgroup") else { return "" }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") || line.contains(":name=systemd:") {
            let components = line.split(separator: ":", maxSplits: 2).last?.split(separator: "/") ?? []
            if let unit = components.last(where: { $0.hasSuffix(".service") || $0.hasSuffix(".scope") }) {
                return String(unit)
            }
        }
        return ""
    }
}
