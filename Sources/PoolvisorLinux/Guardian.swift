import CShim
import Glibc
import PoolvisorSystem

/// The guardian: a small process that kills what the workers leave behind when the supervisor dies
/// without a word (SIGKILL, a crash, the OOM killer), with or without systemd and cgroups. Workers
/// die with the supervisor by PDEATHSIG, but their own children do not, and once the supervisor is
/// gone they are re-parented out of its reach.
///
/// It is started once, early (a fork of the spawn server: it shares the server's pages), and blocks
/// reading a pipe whose write end only the supervisor holds, so it costs nothing while the supervisor
/// lives. The supervisor writes each process group it starts and reaps (`watch`, `forget`); every
/// process it spawns also carries `POOLVISOR_RUN=<marker>` in its environment, which a `setsid`'d
/// grandchild keeps. When the pipe ends, whatever closed it, the guardian SIGKILLs the groups still
/// listed and every process whose environment carries the marker, until a pass over /proc finds none,
/// then exits (see `cshim_guardian_start`).
///
/// The contract with an in-place upgrade (an `execve` of a new binary in the same process): the pipe
/// ends only when no process holds the write end any more. Clear FD_CLOEXEC on `descriptor` just
/// before the exec and hand `descriptor`, `pid` and `marker` to the new image (`init(adopting:)`):
/// the guardian sleeps on; a crash of the new image ends the pipe and fires it. Used from the loop
/// thread only.
public final class Guardian {
    /// The guardian's process name (/proc/PID/comm).
    public static let processName = CSHIM_GUARDIAN_NAME
    /// The environment variable that marks every process the supervisor spawns.
    public static let variable = CSHIM_GUARDIAN_VARIABLE

    /// What the new image of an in-place upgrade needs to adopt the running guardian.
    public struct Handover: Equatable, Sendable {
        public var descriptor: Int32
        public var pid: Int32
        public var marker: String
        public init(descriptor: Int32, pid: Int32, marker: String) {
            self.descriptor = descriptor
            self.pid = pid
            self.marker = marker
        }
    }

    /// 128 random bits in hex, unique to this run of the supervisor (not a secret: it only says which
    /// processes are this supervisor's).
    public let marker: String
    /// The guardian's pid: a child of the supervisor (it reaps it, and restarts it if it dies).
    public private(set) var pid: Int32
    /// The write end of the guardian's pipe (close-on-exec, non-blocking); -1 once it is stopped.
    public private(set) var descriptor: Int32
    /// The process groups written to the guardian and not yet reaped: a new guardian is told them.
    private var watched: Set<Int32> = []
    /// Records not written yet: they go at the end of a loop turn (`flush`), so that a start wave
    /// wakes the guardian once per spawn slice, not once per worker.
    private var pending: [Int32] = []
    /// Records the pipe had no room for (the guardian did not keep up), to be logged once.
    public private(set) var dropped = 0
    private let server: () -> Int32

    /// Starts a guardian through `spawner`'s spawn server (or as a fork of this process without one).
    public init(spawner: Spawner) throws(SystemError) {
        var bytes = ""
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2 {
            let half = String(generator.next() as UInt64, radix: 16)
            bytes += String(repeating: "0", count: 16 - half.utf8.count) + half
        }
        marker = bytes
        server = { [weak spawner] in spawner?.serverSocket ?? -1 }
        (pid, descriptor) = try Self.start(server: server(), marker: marker)
    }

    /// The guardian an earlier image of this process started (an in-place upgrade).
    public init(adopting handover: Handover, spawner: Spawner) {
        marker = handover.marker
        pid = handover.pid
        descriptor = handover.descriptor
        server = { [weak spawner] in spawner?.serverSocket ?? -1 }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// The process groups the guardian was told of, so that an adopting image goes on forgetting them.
    public var watchedGroups: [Int32] { watched.sorted() }

    /// The groups the guardian already knows of (from the image that handed it over): not sent again.
    public func knows(_ groups: [Int32]) { watched.formUnion(groups) }

    /// What `init(adopting:)` takes, for the new image (clear FD_CLOEXEC on `descriptor` first).
    public var handover: Handover { Handover(descriptor: descriptor, pid: pid, marker: marker) }

    /// `POOLVISOR_RUN=<marker>`, for a spawned process's environment.
    public var assignment: String { "\(Self.variable)=\(marker)" }

    private static func start(server: Int32, marker: String) throws(SystemError) -> (Int32, Int32) {
        var fd: Int32 = -1
        var pid: pid_t = 0
        let rc = cshim_guardian_start(server, marker, &fd, &pid)
        guard rc == 0 else { throw SystemError("starting the guardian", errno: -rc) }
        return (pid, fd)
    }

    /// A worker (a process group of its own) was started. Written at the next `flush`.
    public func watch(_ group: Int32) {
        guard group > 1, descriptor >= 0 else { return }
        watched.insert(group)
        pending.append(group)
    }

    /// A child was reaped: if it led a watched process group, the guardian forgets it (at the next
    /// `flush`).
    public func forget(_ group: Int32) {
        guard watched.remove(group) != nil, descriptor >= 0 else { return }
        pending.append(-group)
    }

    /// Writes what `watch` and `forget` recorded: once per loop turn. Until then a worker is known to
    /// the guardian by its marker only.
    public func flush() {
        guard !pending.isEmpty else { return }
        defer { pending.removeAll(keepingCapacity: pending.count <= 1024) }
        guard descriptor >= 0 else { return }
        let chunk = Int(CSHIM_GUARDIAN_RECORDS_AT_ONCE)
        pending.withUnsafeBufferPointer { records in
            for start in stride(from: 0, to: records.count, by: chunk) {
                let count = min(chunk, records.count - start)
                if cshim_guardian_send(descriptor, records.baseAddress! + start, Int32(count)) != 0 { dropped += count }
            }
        }
    }

    /// After the guardian died (someone killed it): a new one, told every watched group. The marker
    /// stays, so it also knows every process spawned so far.
    public func restart() throws(SystemError) {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        (pid, descriptor) = try Self.start(server: server(), marker: marker)
        pending = watched.sorted()
        flush()
    }

    /// Closes this process's write end without a stop record, leaving the guardian running: it fires
    /// once no other process holds the write end (an image it was handed to, a test's stand-in).
    public func relinquish() {
        flush()
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
    }

    /// A normal stop, once the workers are gone: the guardian makes its last pass (killing what is
    /// left with the marker: nothing, unless something escaped) and exits; waits for it up to
    /// `timeout` and reaps it. Returns how many processes it killed, nil if it did not exit in time
    /// (then it finishes on its own).
    public func stop(waitingUpTo timeout: Duration = .seconds(2)) -> Int? {
        guard descriptor >= 0 else { return 0 }
        pending.append(Int32(CSHIM_GUARDIAN_STOPPING))
        flush()
        close(descriptor)
        descriptor = -1
        let pidfd = cshim_pidfd_open(pid)
        if pidfd >= 0 {
            defer { close(pidfd) }
            var poller = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
            guard poll(&poller, 1, milliseconds) == 1 else { return nil }
        }
        var status: Int32 = 0
        var rc: Int32
        repeat { rc = waitpid(pid, &status, 0) } while rc < 0 && errno == EINTR
        guard rc == pid, cshim_wifexited(status) != 0 else { return nil }
        return Int(cshim_wexitstatus(status))
    }
}
