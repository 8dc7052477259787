import CShim
import Glibc
import PoolvisorControl
import PoolvisorCore
import PoolvisorSystem

/// The supervisor's control socket: a UNIX stream socket served on the daemon's event loop. It frames
/// requests as lines, decides from each peer's credentials what it may do, and hands every request
/// line to `handler`, whose answer goes back as one line, in order. The protocol on top (JSON lines)
/// is the handler's business, invalid UTF-8 included.
///
/// Nothing here blocks the loop: sockets are non-blocking, an answer the socket cannot take yet waits
/// in its connection's output buffer, and while it waits no further request of that connection is
/// read or handled (backpressure). Memory per connection is therefore bounded by one request line,
/// one read and one answer.
///
/// Nor can a peer keep others out. Each request must arrive whole within `requestTimeout` of the
/// connection's accept or of its previous answer, however steadily it trickles in; a connection that
/// moves no byte either way for `idleTimeout` is closed. Read-only peers (members of the group) get
/// at most `maximumConnectionsPerUser` connections per uid and `maximumReadOnlyConnections` together;
/// root and the supervisor's own user are admitted up to `maximumConnections`, the limit for all, so
/// the difference is theirs alone and they are served however many read-only peers sit and wait.
public final class ControlServer {
    /// Who is on the other end, from SO_PEERCRED and SO_PEERGROUPS, as of its connect().
    public struct Peer: Sendable, Equatable {
        public var pid: Int32
        public var uid: UInt32
        var gid: UInt32
        var groups: [UInt32]
    }

    /// What a peer may do. Peers that may do nothing get a refusal line and never reach the handler.
    public enum Access: Sendable, Equatable {
        /// Root or the supervisor's own user.
        case full
        /// A member of the socket's group.
        case readOnly
    }

    /// One request line (without its newline) → one answer line (without newline).
    public typealias Handler = (_ request: ArraySlice<UInt8>, _ access: Access, _ peer: Peer) -> [UInt8]

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
        /// The accept or the end of the last answer: the next request must be complete by this plus
        /// the request timeout (unless an answer is being sent, during which no request is read).
        var waitingSince: Instant
        /// The peer shut down its sending side: answer what it sent, then close.
        var endOfInput = false
        /// Something went wrong (e.g. an oversized request): send what is queued, then close.
        var finishing = false
        var isOpen = true
        /// `events --follow`: new events are pushed to it; no request deadline applies, and it is
        /// dropped if it leaves `maximumPendingOutputBytes` unread or reads nothing for the idle timeout
        /// while output waits.
        var follows = false
        /// Only this pool's (or job's) events, when following.
        var followPool: String?
        /// The socket's send buffer, once raised for a large answer.
        var sendBuffer = 0

        var pendingOutput: Int { output.count - sent }

        init(fd: Int32, peer: Peer, access: Access, now: Instant) {
            self.fd = fd
            self.peer = peer
            self.access = access
            self.lastActivity = now
            self.waitingSince = now
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
    private let requestTimeout: Duration
    private let idleTimeout: Duration
    private let maximumConnections: Int
    private let maximumReadOnlyConnections: Int
    private let maximumConnectionsPerUser: Int

    private let listenFD: Int32
    /// Identifies our socket file, so that close() never unlinks another supervisor's.
    private let socketFile: (device: UInt64, inode: UInt64)
    private var listenerRegistration: EventLoop.Registration?
    /// One timer for all connections, armed at the earliest connection deadline (or the end of an accept pause).
    private var timer: DeadlineTimer?
    private var timerRegistration: EventLoop.Registration?
    private var timerArmedAt: Instant?
    private var acceptPausedUntil: Instant?
    private var connections: [Int32: Connection] = [:]
    /// Read-only connections, in all and per uid (a uid with none has no entry).
    private var readOnlyCount = 0
    private var readOnlyCountByUID: [UInt32: Int] = [:]
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var isClosed = false
    /// The connection whose request the handler is answering now.
    private var handling: Connection?
    /// Connections following the event stream.
    public private(set) var followerCount = 0

    /// Binds `path` (creating its directory), mode 0660, owned by the supervisor's user and `group`
    /// (nil: the supervisor's own group), and starts serving on `loop`. Members of that group get
    /// `.readOnly`. A socket file left by a dead supervisor is replaced; a live one is an error.
    ///
    /// A request line (without its newline) may be `maximumRequestBytes` long and must be complete
    /// within `requestTimeout` of the accept or of the end of the previous answer, or the peer gets an
    /// error line and is disconnected. `maximumPendingOutputBytes` bounds the answer a connection may
    /// leave unread; a peer that does not read an answer bigger than that is disconnected. A peer that
    /// neither sends nor reads for `idleTimeout` is disconnected too, without a word (a peer that does
    /// not read its answer would not read one either).
    ///
    /// `maximumConnections` bounds all connections (and so the fds they take). Of those, read-only
    /// peers may hold `maximumReadOnlyConnections` together (at most `maximumConnections`) and
    /// `maximumConnectionsPerUser` for each uid; the rest is kept for root and the supervisor's user.
    public init(
        path: String, group: UInt32?, loop: EventLoop, maximumRequestBytes: Int = 64 * 1024,
        requestTimeout: Duration = .seconds(5), idleTimeout: Duration = .seconds(5),
        maximumConnections: Int = 64, maximumReadOnlyConnections: Int = 48, maximumConnectionsPerUser: Int = 8,
        maximumPendingOutputBytes: Int = 4 * 1024 * 1024, adopting listener: Int32? = nil, handler: @escaping Handler
    ) throws {
        self.path = path
        self.loop = loop
        self.handler = handler
        self.group = group ?? getegid()
        self.maximumRequestBytes = maximumRequestBytes
        self.maximumPendingOutputBytes = maximumPendingOutputBytes
        self.requestTimeout = max(requestTimeout, .milliseconds(1))
        self.idleTimeout = max(idleTimeout, .milliseconds(1))
        self.maximumConnections = maximumConnections
        self.maximumReadOnlyConnections = min(maximumReadOnlyConnections, maximumConnections)
        self.maximumConnectionsPerUser = maximumConnectionsPerUser
        let timer: DeadlineTimer
        do { timer = try DeadlineTimer() } catch let e as SystemError { throw ControlServerError.system(e) }
        self.timer = timer
        if let listener {
            // Handed over by the image before an in-place upgrade: already bound and listening.
            var st = stat()
            guard lstat(path, &st) == 0 else { throw ControlServerError.system(SystemError("stat \(path)")) }
            listenFD = listener
            socketFile = (UInt64(st.st_dev), UInt64(st.st_ino))
            _ = fcntl(listener, F_SETFD, FD_CLOEXEC)
        } else {
            (listenFD, socketFile) = try Self.listen(at: path, group: self.group)
        }
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
    public func close() {
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

    /// The listening socket, for an in-place upgrade to hand over (its file stays where it is).
    public var listener: Int32 { listenFD }

    /// The fds the server holds (listener, timer, connections); tests use this to check for leaks.
    var descriptors: [Int32] {
        guard !isClosed else { return [] }
        return [listenFD] + (timer.map { [$0.fd] } ?? []) + connections.keys.sorted()
    }

    public var connectionCount: Int { connections.count }

    /// Connections of read-only peers (members of the group), among `connectionCount`.
    var readOnlyConnectionCount: Int { readOnlyCount }

    /// Answer bytes waiting for peers that read slowly, over all connections.
    public var pendingOutputBytes: Int { connections.values.reduce(0) { $0 + $1.pendingOutput } }

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

    /// Who may connect is known only once accepted (SO_PEERCRED), so every peer is accepted, then
    /// served or told why not and closed at once: a refused peer holds nothing.
    private func admit(_ fd: Int32) {
        guard connections.count < maximumConnections else {
            return refuse(fd, "too many control connections (limit \(maximumConnections))")
        }
        guard let peer = Self.peer(of: fd) else {
            Glibc.close(fd)
            return
        }
        guard let access = access(for: peer) else {
            return refuse(
                fd,
                "permission denied: uid \(peer.uid) is not root, not the supervisor's user (uid \(ownUID)) and not in its group \(group)"
            )
        }
        if access == .readOnly {
            guard readOnlyCountByUID[peer.uid, default: 0] < maximumConnectionsPerUser else {
                return refuse(fd, "too many control connections from uid \(peer.uid) (limit \(maximumConnectionsPerUser) per user)")
            }
            guard readOnlyCount < maximumReadOnlyConnections else {
                return refuse(fd, "too many control connections from read-only users (limit \(maximumReadOnlyConnections))")
            }
        }
        let c = Connection(fd: fd, peer: peer, access: access, now: MonotonicClock.now())
        do {
            c.registration = try loop.add(fd) { [unowned self, unowned c] events in self.handle(c, events: events) }
        } catch {
            Glibc.close(fd)
            return
        }
        connections[fd] = c
        if access == .readOnly {
            readOnlyCount += 1
            readOnlyCountByUID[peer.uid, default: 0] += 1
        }
        schedule(c)
        // The request usually came with the connection: answer it in this turn, not the next.
        receive(c)
    }

    /// Sends an error line to a connection that will not be served and closes it. The socket is
    /// fresh, so its buffer takes the line whole.
    private func refuse(_ fd: Int32, _ error: String) {
        let bytes = Self.errorLine(error)
        _ = send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL))
        Glibc.close(fd)
    }

    /// `{"v":1,"ok":false,"error":…}` and a newline: the protocol's error answer, which is all the
    /// server itself ever says.
    private static func errorLine(_ error: String) -> [UInt8] {
        var bytes: [UInt8] = []
        JSON.object(["v": 1, "ok": false, "error": .string(error)]).serialize(into: &bytes)
        bytes.append(newline)
        return bytes
    }

    private func access(for peer: Peer) -> Access? {
        if peer.uid == 0 || peer.uid == ownUID { return .full }
        if peer.gid == group || peer.groups.contains(group) { return .readOnly }
        return nil
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
                handling = c
                let answer = handler(line, c.access, c.peer)
                handling = nil
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

    /// About what a Unix socket takes at a time by default (net.core.wmem_default).
    private static let defaultSendBuffer = 208 << 10

    /// Lets the socket take a large answer (a status of thousands of workers) in one write, so that it
    /// leaves poolvisor at once rather than a few hundred KB each time the client has read: a client
    /// that is slow to get the CPU (in a start wave of thousands) costs poolvisor nothing. Beyond
    /// net.core.wmem_max only with CAP_NET_ADMIN (SO_SNDBUFFORCE); only for root and poolvisor's own
    /// user, whose answers may sit in the kernel.
    private func raiseSendBuffer(_ c: Connection) {
        var size = Int32(clamping: min(c.pendingOutput, maximumPendingOutputBytes))
        let length = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(c.fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, length) != 0 {
            _ = setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &size, length)
        }
        c.sendBuffer = Int(size)
    }

    private func tooLong(_ c: Connection) {
        c.finishing = true
        c.output.append(contentsOf: Self.errorLine("request too long (limit \(maximumRequestBytes) bytes)"))
    }

    /// Writes pending output until done or the socket is full. False if the connection broke (dropped).
    private func flush(_ c: Connection) -> Bool {
        let answered = !c.output.isEmpty
        if c.access == .full && c.pendingOutput > max(c.sendBuffer, Self.defaultSendBuffer) { raiseSendBuffer(c) }
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
        if answered {
            // The answers are out: the wait for the next request starts now.
            c.waitingSince = c.lastActivity
            schedule(c)
        }
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

    /// The connection of the request being handled now follows the event stream (`events --follow`),
    /// of one pool if given: `broadcast` sends it every event from now on.
    public func followCurrentRequest(pool: String?) {
        guard let c = handling, !c.follows else { return }
        c.follows = true
        c.followPool = pool
        followerCount += 1
    }

    /// One line (without its newline) to every follower of `pool`'s events (and those of all). A
    /// follower that leaves more than `maximumPendingOutputBytes` unread is dropped, never waited for.
    public func broadcast(_ line: [UInt8], pool: String?) {
        for c in Array(connections.values) where c.isOpen && c.follows && (c.followPool == nil || c.followPool == pool) {
            c.output.append(contentsOf: line)
            c.output.append(Self.newline)
            guard flush(c) else { continue }
            if c.pendingOutput > maximumPendingOutputBytes {
                drop(c)
            } else if c.pendingOutput > 0 {
                watch(c, EventLoop.writable)
                schedule(c)
            }
        }
    }

    private func drop(_ c: Connection) {
        guard c.isOpen else { return }
        c.isOpen = false
        if c.follows { followerCount -= 1 }
        connections[c.fd] = nil
        if c.access == .readOnly {
            readOnlyCount -= 1
            let left = readOnlyCountByUID[c.peer.uid, default: 1] - 1
            readOnlyCountByUID[c.peer.uid] = left > 0 ? left : nil
        }
        if let r = c.registration { loop.forgetBeforeClose(r) }
        Glibc.close(c.fd)
    }

    // MARK: - Deadlines

    /// When `c` is closed unless something happens first: while it waits for a request, the request
    /// deadline or the idle one, whichever is earlier; while an answer is being sent, the idle one.
    private func deadline(of c: Connection) -> Instant? {
        let idle = c.lastActivity + idleTimeout
        guard c.pendingOutput == 0 else { return idle }
        if c.follows { return nil }  // waits for events as long as it takes
        return min(idle, c.waitingSince + requestTimeout)
    }

    private func timerFired() {
        timer?.acknowledge()
        timerArmedAt = nil
        let now = MonotonicClock.now()
        if let until = acceptPausedUntil, until <= now, let r = listenerRegistration {
            acceptPausedUntil = nil
            try? loop.modify(r, events: EventLoop.readable)
        }
        for c in Array(connections.values) where c.isOpen {
            if c.follows {
                if c.pendingOutput > 0 && c.lastActivity + idleTimeout <= now { drop(c) }
            } else if c.pendingOutput == 0 && c.waitingSince + requestTimeout <= now {
                // The loop may have been busy (a long reload): what has arrived by now counts, so read
                // it before judging. A whole request is answered, which starts a new wait.
                receive(c)
                if c.isOpen && c.pendingOutput == 0 && c.waitingSince + requestTimeout <= now { requestTimedOut(c) }
            } else if c.lastActivity + idleTimeout <= now {
                drop(c)
            }
        }
        guard !isClosed else { return }  // a handler closed the server
        armTimer()
    }

    /// Says why and closes. Nothing of an answer is pending, so the socket's buffer takes the line
    /// unless the peer has left earlier answers unread; then it goes without.
    private func requestTimedOut(_ c: Connection) {
        let bytes = Self.errorLine("request not received whole within \(requestTimeout.humanReadable)")
        _ = send(c.fd, bytes, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
        drop(c)
    }

    /// Arms the timer at the earliest deadline of all connections or the end of an accept pause.
    private func armTimer() {
        let next = connections.values.lazy.compactMap(deadline(of:)).min()
        let earliest = [next, acceptPausedUntil].compactMap { $0 }.min()
        timerArmedAt = earliest
        timer?.arm(at: earliest)
    }

    /// Brings the timer forward to `c`'s deadline if that is earlier than the one it is armed at.
    /// Called when a deadline may have moved earlier (a new connection, the end of an answer); bytes
    /// received or sent only move deadlines later, and a timer that fires early just re-arms.
    private func schedule(_ c: Connection) {
        guard let d = deadline(of: c) else { return }
        if let armed = timerArmedAt, armed <= d { return }
        timerArmedAt = d
        timer?.arm(at: d)
    }
}
