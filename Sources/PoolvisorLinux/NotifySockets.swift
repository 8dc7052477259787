import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// One NOTIFY_SOCKET per replica slot (datagram, SO_PASSCRED), bound before its first worker starts
/// and kept across restarts, so any sd_notify library talks to poolvisor exactly as to systemd. A slot
/// may briefly have two workers (the old one draining while its replacement starts); the daemon tells
/// them apart by the sender's pid, which SO_PASSCRED gives with every datagram.
public final class NotifySockets {
    /// (replica, message, sender pid or 0) for each datagram received.
    public typealias Delivery = (ReplicaID, NotifyMessage, Int32) -> Void

    private struct Socket {
        var fd: Int32
        var path: String
        var registration: EventLoop.Registration
    }

    private let loop: EventLoop
    private let deliver: Delivery
    private var sockets: [ReplicaID: Socket] = [:]
    private var buffer = [UInt8](repeating: 0, count: 4096)

    public init(loop: EventLoop, deliver: @escaping Delivery) {
        self.loop = loop
        self.deliver = deliver
    }

    /// Binds the replica's socket at `path` unless it is already bound, owned by the worker's user so
    /// that a worker running as another user may send to it.
    public func ensure(_ id: ReplicaID, path: String, owner: (uid: UInt32, gid: UInt32)? = nil) throws {
        if let s = sockets[id] {
            if let owner { chown(s.path, owner.uid, owner.gid) }
            return
        }
        let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        try makeDirectories(dir, mode: 0o755)
        unlink(path)  // left over from a supervisor that was killed
        let fd = cshim_bind_datagram(path)
        guard fd >= 0 else { throw SystemError("bind notify socket \(path)", errno: -fd) }
        chmod(path, 0o660)
        if let owner { chown(path, owner.uid, owner.gid) }
        do {
            let registration = try loop.add(fd) { [unowned self] _ in self.receive(id) }
            sockets[id] = Socket(fd: fd, path: path, registration: registration)
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
    }

    func release(_ id: ReplicaID) {
        guard let s = sockets.removeValue(forKey: id) else { return }
        loop.remove(s.registration)
        close(s.fd)
        unlink(s.path)
    }

    /// Releases the sockets of every replica of a pool that is gone.
    public func forget(pool: String) {
        for id in sockets.keys where id.pool == pool { release(id) }
    }

    /// One bound socket as an in-place upgrade hands it over: the fd stays open across the exec and
    /// the worker keeps sending to the same path.
    public struct Handover: Sendable, Codable {
        public var replica: ReplicaID
        public var fd: Int32
        public var path: String
    }

    public func handover() -> [Handover] {
        sockets.map { id, s in Handover(replica: id, fd: s.fd, path: s.path) }
    }

    /// Goes on receiving on the sockets an earlier image handed over.
    public func adopt(_ handed: [Handover]) {
        for h in handed {
            _ = fcntl(h.fd, F_SETFD, FD_CLOEXEC)
            let id = h.replica
            if let registration = try? loop.add(h.fd, { [unowned self] _ in self.receive(id) }) {
                sockets[id] = Socket(fd: h.fd, path: h.path, registration: registration)
            } else {
                close(h.fd)
            }
        }
    }

    public func releaseAll() {
        for id in Array(sockets.keys) { release(id) }
    }

    private func receive(_ id: ReplicaID) {
        guard let s = sockets[id] else { return }
        var sender: pid_t = 0
        while true {
            let n = cshim_recv_with_pid(s.fd, &buffer, buffer.count, &sender)
            if n == -Int(EAGAIN) || n == -Int(EBADF) { return }
            if n < 0 { continue }  // oversized or otherwise broken datagram: dropped
            let text = String(decoding: buffer[0..<n], as: UTF8.self)
            deliver(id, NotifyMessage(parsing: text), sender)
        }
    }
}

/// mkdir -p.
public func makeDirectories(_ path: String, mode: mode_t) throws {
    var current = ""
    for part in path.split(separator: "/", omittingEmptySubsequences: true) {
        current += "/" + part
        if mkdir(current, mode) != 0 && errno != EEXIST { throw SystemError("mkdir \(current)") }
    }
}
