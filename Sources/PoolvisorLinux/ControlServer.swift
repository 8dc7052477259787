import CShim
import Glibc
import PoolvisorCore

/// The supervisor's control socket: a UNIX stream socket served on the daemon's event loop. It frames
/// requests as lines, decides from each peer's credentials what it may do, and hands every request
/// line to `handler`, whose answer goes back as one line, in order. The protocol on top (JSON lines)
/// is the handler's business, invalid UTF-8 included.
///
/// Nothing here blocks the loop: sockets are non-blocking, an answer the socket cannot take yet waits
/// in its connection's output buffer, and while it waits no further request of that connection is
/// read or handled (backpressure). Memory per connection is therefore bounded by one request line,
/// one read and one answer.
final class ControlServer {
    /// Who is on the other end, from SO_PEERCRED and SO_PEERGROUPS, as of its connect().
    struct Peer: Sendable, Equatable {
        var pid: Int32
        var uid: UInt32
        var gid: UInt32
        var groups: [UInt32]
    }

    /// What a peer may do. Peers that may do nothing get a refusal line and never reach the handler.
    enum Access: Sendable, Equatable {
        /// Root or the supervisor's own user.
        case full
        /// A member of the socket's group.
        case readOnly
    }

    /// One request line (without its newline) → one answer line (without newline).
    typealias Handler = (_ request: ArraySlice<UInt8>, _ access: Access, _ peer: Peer) -> [UInt8]

    /// One accepted, authorized peer.
    private final class Connection {
        let fd: Int32
        let peer: Peer
        let access: Access
        var registration: EventLoop.Registration?
        var interest = EventLoop.readable
        /// Received bytes: answered ones before `start`, then unanswered lines and at most one partial
        /// line; `scanned` is where the search for the next newline resumes.
        var input: [UInt8] = []
        var start = 0
        var scanned = 0
        /// Answers not yet taken by the socket, from `sent` on.
        var output: [UInt8] = []
        var sent = 0
        /// The last byte received or sent; the idle timeout counts from here.
        var lastActivity: Instant
        /// The peer shut down its sending side: answer what it sent, then close.
        var endOfInput = false
        /// Something went wrong (e.g. an oversized request): send what is queued, then close.
        var finishing = false
        var isOpen = true

        var pendingOutput: Int { output.count - sent }

        init(fd: Int32, peer: Peer, access: Access, now: Instant) {
            self.fd = fd
            self.peer = peer
            self.access = access
            self.lastActivity = now
        }
    }

    /// Answers are gathered up to this size before being written, so that pipelined requests cost one
    /// write, not one each.
    private static let flushThreshold = 64 * 1024
    /// After an accept() error such as EMFILE the listener stays readable; rather than spin on it,
    /// accepting pauses this long.
    private static let acceptPause = Duration.seconds(1)
    private static let newline = UInt8(ascii: "\n")

    let path: String
    private let loop: EventLoop
    private let handler: Handler
    private let ownUID = geteuid()
    private let group: UInt32
    private let maximumRequestBytes: Int
    private let maximumPendingOutputBytes: Int
    private let idleTimeout: Duration
    private let maximumConnections: Int

    private let listenFD: Int32
    /// Identifies our socket file, so that close() never unlinks another supervisor's.
    private let socketFile: (device: UInt64, inode: UInt64)
    private var listenerRegistration: EventLoop.Registration?
    /// One timer for all connections, armed at the earliest idle deadline (or the end of an accept pause).
    private var timer: DeadlineTimer?
    private var timerRegistration: EventLoop.Registration?
    private var timerArmedAt: Instant?
    private var acceptPausedUntil: Instant?
    private var connections: [Int32: Connection] = [:]
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var isClosed = false

    /// Binds `path` (creating its directory), mode 0660, owned by the supervisor's user and `group`
    /// (nil: the supervisor's own group), and starts serving on `loop`. Members of that group get
    /// `.readOnly`. A socket file left by a dead supervisor is replaced; a live one is an error.
    ///
    /// `maximumPendingOutputBytes` bounds the answer a connection may leave unread; a peer that does
    /// not read an answer bigger than that is disconnected. A peer that neither sends nor reads for
    /// `idleTimeout` is disconnected too.
    init(
        path: String, group: UInt32?, loop: EventLoop, maximumRequestBytes: Int = 64 * 1024,
        idleTimeout: Duration = .seconds(30), maximumConnections: Int = 64,
        maximumPendingOutputBytes: Int = 4 * 1024 * 1024, handler: @escaping Handler
    ) throws {
        self.path = path
        self.loop = loop
        self.handler = handler
        self.group = group ?? getegid()
        self.maximumRequestBytes = maximumRequestBytes
        self.maximumPendingOutputBytes = maximumPendingOutputBytes
        self.idleTimeout = max(idleTimeout, .milliseconds(1))
        self.maximumConnections = maximumConnections
        let timer: DeadlineTimer
        do { timer = try DeadlineTimer() } catch let e as SystemError { throw ControlServerError.system(e) }
        self.timer = timer
        (listenFD, socketFile) = try Self.listen(at: path, group: self.group)
        do {
            listenerRegistration = try loop.add(listenFD) { [unowned self] _ in self.acceptConnections() }
            timerRegistration = try loop.add(timer.fd) { [unowned self] _ in self.timerFired() }
        } catch {
            close()
            throw ControlServerError.system(error as? SystemError ?? SystemError("epoll_ctl", errno: EINVAL))
        }
    }

    deinit { close() }

    /// Stops listening, closes every connection and removes the socket file. Idempotent.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        for c in Array(connections.values) { drop(c) }
        if let r = timerRegistration { loop.forgetBeforeClose(r) }
        timer = nil  // closes its fd
        if let r = listenerRegistration { loop.forgetBeforeClose(r) }
        Glibc.close(listenFD)
        var st = stat()
        if lstat(path, &st) == 0, UInt64(st.st_dev) == socketFile.device, UInt64(st.st_ino) == socketFile.inode {
            unlink(path)
        }
    }

    /// The fds the server holds (listener, timer, connections); tests use this to check for leaks.
    var descriptors: [Int32] {
        guard !isClosed else { return [] }
        return [listenFD] + (timer.map { [$0.fd] } ?? []) + connections.keys.sorted()
    }

    var connectionCount: Int { connections.count }

    /// Answer bytes waiting for peers that read slowly, over all connections.
    var pendingOutputBytes: Int { connections.values.reduce(0) { $0 + $1.pendingOutput } }

    // MARK: - Setting up the socket

    /// mkdir -p, replace a stale socket, bind, chmod 0660, chown, listen: in that order, so nobody can
    /// connect before the mode and owner are right.
    private static func listen(at path: String, group: UInt32) throws(ControlServerError) -> (Int32, (UInt64, UInt64)) {
        guard path.hasPrefix("/") else { throw .relativePath(path) }
        let limit = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
        guard path.utf8.count <= limit else { throw .pathTooLong(path: path, limit: limit) }
        let directory = String(path[..<path.lastIndex(of: "/")!])
        do { try makeDirectories(directory, mode: 0o755) } catch let e as SystemError { throw .system(e) } catch {}

        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw .notASocket(path) }
            // Only a socket nobody listens on is stale. A full backlog (EAGAIN) means a live supervisor.
            let probe = cshim_stream_connect(path, 0)
            if probe >= 0 {
                Glibc.close(probe)
                throw .alreadyServing(path)
            }
            switch -probe {
            case EAGAIN: throw .alreadyServing(path)
            case ECONNREFUSED, ENOENT:
                if unlink(path) != 0 && errno != ENOENT { throw .system(SystemError("remove stale \(path)")) }
            default: throw .system(SystemError("connect to existing \(path)", errno: -probe))
            }
        } else if errno != ENOENT {
            throw .system(SystemError("stat \(path)"))
        }

        let fd = cshim_stream_bind(path)
        guard fd >= 0 else { throw .system(SystemError("bind \(path)", errno: -fd)) }
        func fail(_ operation: String) -> ControlServerError {
            let error = SystemError(operation)
            Glibc.close(fd)
            unlink(path)
            return .system(error)
        }
        guard chmod(path, 0o660) == 0 else { throw fail("chmod 0660 \(path)") }
        guard lchown(path, geteuid(), group) == 0 else { throw fail("give \(path) to group \(group)") }
        guard Glibc.listen(fd, 128) == 0 else { throw fail("listen on \(path)") }
        guard lstat(path, &st) == 0 else { throw fail("stat \(path)") }
        return (fd, (UInt64(st.st_dev), UInt64(st.st_ino)))
    }

    // MARK: - Accepting

    private func acceptConnections() {
        // A bounded batch per wake-up keeps the loop fair to everything else it serves.
        for _ in 0..<32 {
            let fd = cshim_accept(listenFD)
            if fd >= 0 {
                admit(fd)
                continue
            }
            switch -fd {
            case EAGAIN: return
            case EINTR, ECONNABORTED: continue
            default:  // EMFILE, ENFILE, ENOBUFS, ENOMEM: out of resources
                pauseAccepting()
                return
            }
        }
    }

    private func admit(_ fd: Int32) {
        guard connections.count < maximumConnections else {
            return refuse(fd, #"{"v":1,"ok":false,"error":"too many control connections (limit \#(maximumConnections))"}"#)
        }
        guard let peer = Self.peer(of: fd) else {
            Glibc.close(fd)
            return
        }
        guard let access = access(for: peer) else {
            return refuse(
                fd,
                #"{"v":1,"ok":false,"error":"permission denied: uid \#(peer.uid) is not root, not the supervisor's user (uid \#(ownUID)) and not in its group \#(group)"}"#
            )
        }
        let c = Connection(fd: fd, peer: peer, access: access, now: MonotonicClock.now())
        do {
            c.registration = try loop.add(fd) { [unowned self, unowned c] events in self.handle(c, events: events) }
        } catch {
            Glibc.close(fd)
            return
        }
        connections[fd] = c
        if timerArmedAt == nil { armTimer() }  // otherwise it is armed no later than this deadline
    }

    /// Sends one line to a connection that will not be served and closes it. The socket is fresh, so
    /// its buffer takes the line whole.
    private func refuse(_ fd: Int32, _ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL))
        Glibc.close(fd)
    }

    private func access(for peer: Peer) -> Access? {
        if peer.uid == 0 || peer.uid == ownUID { return .full }
        if peer.gid == group || peer.groups.contains(group) { return .readOnly }
        return nil
    }

    private static func peer(of fd: Int32) -> Peer? {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        guard cshim_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
        var groups = [gid_t](repeating: 0, count: 32)
        var n = cshim_peer_groups(fd, &groups, Int32(groups.count))
        if n > groups.count {
            groups = [gid_t](repeating: 0, count: Int(n))
            n = cshim_peer_groups(fd, &groups, Int32(groups.count))
        }
        let supplementary = n >= 0 ? Array(groups.prefix(Int(n))) : groupsFromProc(pid)
        return Peer(pid: pid, uid: uid, gid: gid, groups: supplementary)
    }

    /// The "Groups:" line of /proc/<pid>/status, for kernels without SO_PEERGROUPS (before 4.13). Unlike
    /// SO_PEERGROUPS this is read now, not at connect(), so a peer that changed its groups since then,
    /// or exited, is seen with its groups of now (or none).
    private static func groupsFromProc(_ pid: pid_t) -> [UInt32] {
        let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return [] }
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return [] }
        return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
    }

    private func pauseAccepting() {
        guard let r = listenerRegistration else { return }
        try? loop.modify(r, events: 0)
        acceptPausedUntil = MonotonicClock.now() + Self.acceptPause
        armTimer()
    }

    // MARK: - Serving a connection

    private func handle(_ c: Connection, events: UInt32) {
        // HUP: the peer closed (not just half-closed): nobody is left to read an answer.
        if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { return drop(c) }
        if c.interest == EventLoop.readable {
            receive(c)
        } else {
            advance(c)
        }
    }

    /// One read per wake-up: epoll is level-triggered, so more data brings us back.
    private func receive(_ c: Connection) {
        if c.start > 0 {
            c.input.removeSubrange(0..<c.start)
            c.scanned -= c.start
            c.start = 0
        }
        let n = readBuffer.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
        if n > 0 {
            c.input.append(contentsOf: readBuffer[0..<n])
            c.lastActivity = MonotonicClock.now()
        } else if n == 0 {
            c.endOfInput = true
        } else if errno == EAGAIN || errno == EINTR {
            return
        } else {
            return drop(c)
        }
        advance(c)
    }

    /// Answers the complete lines received, writing as the answers pile up, until the socket is full
    /// (then waits until it is writable, reading nothing meanwhile), the lines run out (then waits for
    /// more input), or the connection is done (then closes it).
    private func advance(_ c: Connection) {
        while true {
            var exhausted = false
            while !c.finishing && c.pendingOutput < Self.flushThreshold {
                guard let line = nextLine(c) else {
                    exhausted = true
                    break
                }
                let answer = handler(line, c.access, c.peer)
                guard c.isOpen else { return }  // the handler closed the server
                c.output.append(contentsOf: answer)
                c.output.append(Self.newline)
            }
            guard flush(c) else { return }
            if c.pendingOutput > 0 {
                guard c.pendingOutput <= maximumPendingOutputBytes else { return drop(c) }
                return watch(c, EventLoop.writable)
            }
            // A partial line at end of input is not a request: it is dropped with the connection.
            if c.finishing || (exhausted && c.endOfInput) { return drop(c) }
            if exhausted { return watch(c, EventLoop.readable) }
        }
    }

    /// The next complete request line, or nil. A line over the limit (or a partial line already over
    /// it) queues the error answer and marks the connection finishing.
    private func nextLine(_ c: Connection) -> ArraySlice<UInt8>? {
        guard let nl = c.input[c.scanned...].firstIndex(of: Self.newline) else {
            c.scanned = c.input.count
            if c.input.count - c.start > maximumRequestBytes { tooLong(c) }
            return nil
        }
        let line = c.input[c.start..<nl]
        c.start = nl + 1
        c.scanned = c.start
        guard line.count <= maximumRequestBytes else {
            tooLong(c)
            return nil
        }
        return line
    }

    private func tooLong(_ c: Connection) {
        c.finishing = true
        c.output.append(contentsOf: #"{"v":1,"ok":false,"error":"request too long (limit \#(maximumRequestBytes) bytes)"}"#.utf8)
        c.output.append(Self.newline)
    }

    /// Writes pending output until done or the socket is full. False if the connection broke (dropped).
    private func flush(_ c: Connection) -> Bool {
        while c.sent < c.output.count {
            let n = c.output.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.sent, $0.count - c.sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                c.sent += n
                c.lastActivity = MonotonicClock.now()
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                return true
            } else {
                drop(c)
                return false
            }
        }
        // Keep a small buffer for the next answers; give a big one back.
        c.output.removeAll(keepingCapacity: c.output.capacity <= Self.flushThreshold * 2)
        c.sent = 0
        return true
    }

    private func watch(_ c: Connection, _ events: UInt32) {
        guard c.interest != events, let r = c.registration else { return }
        do {
            try loop.modify(r, events: events)
            c.interest = events
        } catch {
            drop(c)
        }
    }

    private func drop(_ c: Connection) {
        guard c.isOpen else { return }
        c.isOpen = false
        connections[c.fd] = nil
        if let r = c.registration { loop.forgetBeforeClose(r) }
        Glibc.close(c.fd)
    }

    // MARK: - The idle timer

    private func timerFired() {
        timer?.acknowledge()
        timerArmedAt = nil
        let now = MonotonicClock.now()
        if let until = acceptPausedUntil, until <= now, let r = listenerRegistration {
            acceptPausedUntil = nil
            try? loop.modify(r, events: EventLoop.readable)
        }
        for c in Array(connections.values) where c.lastActivity + idleTimeout <= now { drop(c) }
        armTimer()
    }

    /// Arms the timer at the earliest idle deadline or the end of an accept pause. Activity only moves
    /// deadlines later, so it never re-arms: a timer that fires early just finds nothing to do.
    private func armTimer() {
        let idle = connections.values.lazy.map(\.lastActivity).min().map { $0 + idleTimeout }
        let next = [idle, acceptPausedUntil].compactMap { $0 }.min()
        timerArmedAt = next
        timer?.arm(at: next)
    }
}

/// Why the control socket could not be set up.
enum ControlServerError: Error, CustomStringConvertible {
    case alreadyServing(String)
    case notASocket(String)
    case pathTooLong(path: String, limit: Int)
    case relativePath(String)
    case system(SystemError)

    var description: String {
        switch self {
        case .alreadyServing(let path):
            return "another poolvisor is already serving \(path)"
        case .notASocket(let path):
            return "\(path) exists and is not a socket; leaving it alone (remove it or choose another control socket path)"
        case .pathTooLong(let path, let limit):
            return "control socket path is \(path.utf8.count) bytes long; a UNIX socket address holds at most \(limit): \(path)"
        case .relativePath(let path):
            return "control socket path must be absolute: \(path)"
        case .system(let error):
            return "control socket: \(error)"
        }
    }
}
