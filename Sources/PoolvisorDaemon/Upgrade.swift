import CShim
import Foundation
import Glibc
import PoolvisorCore
import PoolvisorLinux
import PoolvisorScalers
import PoolvisorSystem

/// What one image of poolvisor hands the next in an in-place upgrade (`poolvisor upgrade`, SIGUSR2):
/// the reconciler whole, and the edge's open files by number, which stay open across the `execve`.
/// Written into a memfd whose number the new image gets as `run --handover FD`: a line naming the
/// format, the JSON of this struct, then a NUL and the event ring as text (docs/ARCHITECTURE.md, "In-place
/// upgrade").
///
/// The format is versioned: `format` is what wrote it. An image reads the formats in
/// `UpgradeState.readable` and says so in `poolvisor handover-formats`, which the old image runs on
/// the new binary before it execs into it: it never hands over to an image that cannot read it.
public struct UpgradeState: Codable, Sendable {
    /// The format this image writes.
    public static let format = 1
    /// The formats this image reads.
    public static let readable: ClosedRange<Int> = 1...1
    /// A handover bigger than this is refused before it is read (10,000 workers take about 10 MB).
    public static let maximumBytes = 256 << 20

    public var format: Int
    /// The version of poolvisor that wrote it.
    public var from: String
    /// When the old image began the handover, for the log's "taken over in N ms".
    public var began: Instant
    public var reconciler: Reconciler
    /// Replicas asked for and not spawned yet.
    public var pendingSpawns: [ReplicaID]
    /// The STATUS= line systemd last got.
    public var sentStatus: String
    /// The soft RLIMIT_NOFILE workers get (the supervisor raised its own).
    public var nofileSoft: Int64
    public var relay: [OutputRelay.Handover]
    public var notify: [NotifySockets.Handover]
    public var controlListener: Int32?
    public var metricsListener: Int32?
    public var guardian: GuardianHandover?
    public var cgroups: [Int32: [String: String]]
    /// The ring behind `poolvisor events` (absent: it starts empty). Not in the JSON: after it, as
    /// bytes (`EventLog.handoverBytes`).
    public var events: EventLog? = nil
    /// `[supervisor.redis_events]`' queue and dropped count (absent: none queued, none dropped).
    public var redisEvents: RedisEvents.Handover? = nil

    private enum CodingKeys: String, CodingKey {
        case format, from, began, reconciler, pendingSpawns, sentStatus, nofileSoft, relay, notify, controlListener, metricsListener
        case guardian, cgroups, redisEvents
    }

    /// The handover's first line, before the format's number.
    static let header = Array("poolvisor handover ".utf8)

    public struct GuardianHandover: Codable, Sendable {
        public var descriptor: Int32
        public var pid: Int32
        public var marker: String
        public var groups: [Int32]
    }

    /// Every file that must stay open across the exec.
    var descriptors: [Int32] {
        relay.map(\.fd) + notify.map(\.fd) + [controlListener, metricsListener, guardian?.descriptor].compactMap { $0 }
    }

    /// Why a new image cannot take over.
    public struct Unreadable: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Reads the handover from `fd` (a memfd), refusing what is too big, unreadable or of a format
    /// this image does not read.
    public static func read(from fd: Int32) -> Result<UpgradeState, Unreadable> {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(Unreadable("\(SystemError("fstat of the handover"))")) }
        guard st.st_size <= maximumBytes else { return .failure(Unreadable("the handover is \(st.st_size) bytes, more than \(maximumBytes)")) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return .failure(Unreadable("\(SystemError("reading the handover"))")) }
            done += n
        }
        close(fd)
        // `poolvisor handover FORMAT\n`, the JSON, and after a NUL the event ring.
        guard bytes.starts(with: header), let newline = bytes.firstIndex(of: UInt8(ascii: "\n")),
            let format = Int(String(decoding: bytes[header.count..<newline], as: UTF8.self))
        else {
            return .failure(Unreadable("the handover is not a poolvisor handover"))
        }
        guard readable.contains(format) else {
            return .failure(Unreadable("the handover is in format \(format); this poolvisor reads \(readable.lowerBound)–\(readable.upperBound)"))
        }
        let end = bytes[(newline + 1)...].firstIndex(of: 0) ?? bytes.endIndex
        var state: UpgradeState
        do {
            state = try bytes[(newline + 1)..<end].withUnsafeBytes { try JSONDecoder().decode(UpgradeState.self, from: Data($0)) }
        } catch {
            // Where, not what: the values may be secrets from the pools file's environment.
            return .failure(Unreadable("the handover cannot be read at \(Self.where(error))"))
        }
        if end < bytes.endIndex { state.events = EventLog(handoverBytes: bytes[(end + 1)...]) }
        return .success(state)
    }

    private static func `where`(_ error: any Error) -> String {
        let path: [any CodingKey]
        switch error as? DecodingError {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context): path = context.codingPath
        case .keyNotFound(let key, let context): path = context.codingPath + [key]
        case nil: return "an unknown place"
        @unknown default: return "an unknown place"
        }
        return path.isEmpty ? "the top" : path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    /// A memfd holding the handover, not close-on-exec.
    func write() -> Result<Int32, SystemError> {
        var data = Data(Self.header + Array("\(format)\n".utf8))
        do { data += try JSONEncoder().encode(self) } catch { return .failure(SystemError("encoding the handover: \(error)", errno: EINVAL)) }
        if let events {
            data.append(0)
            data += events.handoverBytes()
        }
        let fd = cshim_memfd_create("poolvisor-handover")
        guard fd >= 0 else { return .failure(SystemError("memfd_create", errno: -fd)) }
        var written = 0
        let ok = data.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                written += n
            }
            return true
        }
        guard ok else {
            let error = SystemError("writing the handover")
            close(fd)
            return .failure(error)
        }
        return .success(fd)
    }
}

extension Daemon {
    /// `poolvisor upgrade [--binary PATH]` and SIGUSR2: checks the new binary and, if it can take over,
    /// hands over at the end of the loop turn in which the check ends. The quick checks (a regular,
    /// executable file) answer at once; `handover-formats` runs beside the loop, bounded by 5 s, and
    /// its verdict is in `status` (`upgrades`, `upgrade_refusals`, `upgrade_refused`).
    func requestUpgrade(binary: String?) -> CommandOutcome {
        let path = binary ?? Self.installedBinary()
        switch reconciler.phase {
        case .starting, .running: break
        case .stopping, .stopped: return refuseUpgrade(path, "poolvisor is stopping")
        }
        guard upgradeCheck == nil, pendingUpgrade == nil else { return refuseUpgrade(path, "an upgrade is already under way") }
        var st = stat()
        guard stat(path, &st) == 0 else { return refuseUpgrade(path, "\(path): \(SystemError.message(errno))") }
        guard st.st_mode & S_IFMT == S_IFREG else { return refuseUpgrade(path, "\(path) is not a regular file") }
        guard access(path, X_OK) == 0 else { return refuseUpgrade(path, "\(path) is not executable") }
        do {
            upgradeCheck = try UpgradeCheck(binary: path, loop: loop, timeout: .seconds(5)) { [unowned self] in self.upgradeCheckTimedOut() }
        } catch {
            return refuseUpgrade(path, "cannot run \(path) handover-formats: \(error)")
        }
        logger.notice("upgrading in place: checking \(path)")
        return CommandOutcome(accepted: true, lines: ["checking \(path); if it can take over, poolvisor hands over to it (pid \(getpid()) and every worker stay)"])
    }

    private func refuseUpgrade(_ path: String, _ why: String) -> CommandOutcome {
        upgradeRefusals += 1
        upgradeRefused = why
        logger.error("upgrade to \(path) refused: \(why)")
        record(LifecycleEvent(.supervisorUpgradeRefused, at: MonotonicClock.now(), detail: why))
        return CommandOutcome(accepted: false, lines: ["upgrade refused: \(why)"])
    }

    /// The binary installed where this one was started from (a package upgrade replaced the file).
    static func installedBinary() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        var path = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/proc/self/exe"
        if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
        return path
    }

    /// Whether a reaped child was the check of an upgrade's binary; if so, its verdict.
    func reapedUpgradeCheck(_ pid: Int32, _ status: WaitStatus) -> Bool {
        guard let check = upgradeCheck, check.pid == pid else { return false }
        upgradeCheck = nil
        let output = check.finish()
        let path = check.binary
        if check.timedOut {
            _ = refuseUpgrade(path, "\(path) handover-formats did not answer within 5 s")
            return true
        }
        guard status == .exited(0) else {
            _ = refuseUpgrade(path, "\(path) handover-formats failed (\(status))")
            return true
        }
        let formats = output.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," }).compactMap { Int($0) }
        guard formats.contains(UpgradeState.format) else {
            _ = refuseUpgrade(path, "\(path) reads handover formats \(formats.map(String.init).joined(separator: ", ")), not \(UpgradeState.format) (this poolvisor's)")
            return true
        }
        pendingUpgrade = path
        return true
    }

    private func upgradeCheckTimedOut() {
        guard let check = upgradeCheck else { return }
        check.timedOut = true
        kill(-check.pid, SIGKILL)
    }

    /// Hands this process over to `binary`: in-flight probes and readings are dropped (the new image
    /// asks again), the state goes into a memfd, the files it names lose FD_CLOEXEC, and `execve`.
    /// Returns only if the exec failed; then everything goes on as before.
    func performUpgrade(_ binary: String) {
        let began = MonotonicClock.now()
        // While starting, systemd has not had READY=1 yet: the new image sends it when the workers are.
        if reconciler.phase == .running { systemd.handingOver(to: binary) }
        probes.cancelAll()
        guardian?.flush()
        let state = UpgradeState(
            format: UpgradeState.format, from: options.version, began: began, reconciler: reconciler, pendingSpawns: shell.waitingSpawns,
            sentStatus: shell.sentStatus, nofileSoft: spawner.workerFileLimit, relay: relay.handover(), notify: notify?.handover() ?? [],
            controlListener: control?.listener, metricsListener: metricsServer?.listeningSocket,
            guardian: guardian.map { .init(descriptor: $0.descriptor, pid: $0.pid, marker: $0.marker, groups: $0.watchedGroups) },
            cgroups: cgroups?.handover() ?? [:], events: outlets.log, redisEvents: outlets.redis?.handover())
        let memfd: Int32
        switch state.write() {
        case .success(let fd):
            memfd = fd
            logger.debug("upgrade: state written in \(MonotonicClock.now().since(began).humanReadable)")
        case .failure(let error):
            logger.error("upgrade to \(binary) failed before the exec: \(error); going on as before")
            goOn(after: state)
            return
        }
        let kept = state.descriptors + [memfd]
        for fd in kept { _ = fcntl(fd, F_SETFD, 0) }
        // The spawn server is a fork of this image; the new image starts its own.
        spawner.stopServer(wait: true)
        var argv = [binary, "run", "--config", reconciler.file.path, "--handover", String(memfd), "--log-level", options.logLevel]
        if let socket = options.controlSocket { argv += ["--socket", socket] }
        if !options.colour { argv.append("--no-color") }
        var size = stat()
        fstat(memfd, &size)
        logger.notice(
            "upgrade: \(plural(kept.count, "file")), \(plural(state.reconciler.pools.reduce(0) { $0 + $1.workers.count }, "worker")) and \(size.st_size / 1024) KiB of state handed over; exec \(binary)"
        )
        let rc = Self.execute(argv)
        // Still here: the exec failed.
        let error = SystemError("execve \(binary)", errno: rc)
        for fd in kept { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        close(memfd)

        logger.error("upgrade failed: \(error); going on as before")
        goOn(after: state)
    }

    /// After a handover that did not happen: the Redis events taken out go back to the queue (their
    /// dropped count never left), and systemd hears READY=1 after the RELOADING=1.
    private func goOn(after state: UpgradeState) {
        if let carried = state.redisEvents { outlets.redis?.adopt(.init(queued: carried.queued, dropped: 0)) }
        if reconciler.phase == .running { systemd.takenOver(status: reconciler.statusLine) }
    }

    /// execve with this process's environment; returns errno if it failed.
    private static func execute(_ argv: [String]) -> Int32 {
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        execv(argv[0], cArgs)
        return errno
    }

    /// The new image, on the state the old one handed over: its files adopted, the workers' exits
    /// during the exec reaped, systemd told READY=1.
    func tookOver(_ state: UpgradeState) {
        shell.resume(spawns: state.pendingSpawns, sentStatus: state.sentStatus)
        if let cgroups { cgroups.adopt(state.cgroups) }
        relay.adopt(state.relay)
        notify?.adopt(state.notify)
        if let events = state.events { outlets.log = events }
        if let carried = state.redisEvents { outlets.redis?.adopt(carried) }
        let took = MonotonicClock.now().since(state.began)
        logger.notice(
            "upgrade: poolvisor \(options.version) (pid \(getpid())) took over from \(state.from) in \(took.humanReadable) with \(plural(state.reconciler.pools.reduce(0) { $0 + $1.workers.count }, "worker"))"
        )
        logger.debug("upgrade: files adopted \(took.humanReadable) after the handover began")
        feed(.handedOver)
        if reconciler.phase == .running { systemd.takenOver(status: reconciler.statusLine) }
    }
}

/// `BINARY handover-formats`, run beside the loop: its output read as it comes, killed at its deadline.
/// The daemon reaps it (`reapedUpgradeCheck`) and then reads the verdict.
final class UpgradeCheck {
    let binary: String
    let pid: pid_t
    var timedOut = false
    private let fd: Int32
    private let loop: EventLoop
    private var registration: EventLoop.Registration?
    private let timer: DeadlineTimer
    private var timerRegistration: EventLoop.Registration?
    private var output: [UInt8] = []

    init(binary: String, loop: EventLoop, timeout: Duration, timedOut: @escaping () -> Void) throws {
        self.binary = binary
        self.loop = loop
        var fds: [Int32] = [-1, -1]
        guard cshim_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) == 0 else { throw SystemError("pipe2") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
        let argv = [binary, "handover-formats"]
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, binary, &actions, &attributes, cArgs, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw SystemError("posix_spawn", errno: rc)
        }
        self.pid = pid
        fd = fds[0]
        timer = try DeadlineTimer()
        timer.arm(at: MonotonicClock.now() + timeout)
        registration = try loop.add(fd) { [unowned self] _ in self.drain() }
        timerRegistration = try loop.add(timer.fd) { [unowned self] _ in
            self.timer.acknowledge()
            timedOut()
        }
    }

    /// Reads what the check wrote so far (at most 64 KiB is kept).
    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 {
                if output.count < 65536 { output += buffer[0..<n] }
                continue
            }
            if n == 0, let r = registration {
                loop.remove(r)
                registration = nil
            }
            return
        }
    }

    /// After the check was reaped: everything it wrote, and the check's files closed.
    func finish() -> String {
        drain()
        if let r = registration { loop.forgetBeforeClose(r) }
        registration = nil
        close(fd)
        if let r = timerRegistration { loop.forgetBeforeClose(r) }
        timerRegistration = nil
        return String(decoding: output, as: UTF8.self)
    }
}
