import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// Kubernetes' `httpGet` and `tcpSocket` probes on the event loop: a non-blocking connect to an IP
/// address (never a name: resolving one blocks), for HTTP a GET written as the socket takes it and a
/// read of the response up to its status line, then the socket is closed and the outcome handed back.
///
/// It decides nothing and times nothing out: the core gives each attempt a deadline and cancels it.
/// Every attempt holds one socket from `start` until its outcome or `cancel`, and nothing after.
public final class NetworkProbes {
    /// One attempt under way: its socket, and for HTTP the request still to send and the response so far.
    private final class Attempt {
        let id: UInt64
        let fd: Int32
        let done: (UInt64, ProbeOutcome) -> Void
        var registration: EventLoop.Registration?
        var connected = false
        /// The request from `sent` on is still to be written; empty for a TCP probe.
        let request: [UInt8]
        var sent = 0
        var response: [UInt8] = []

        init(id: UInt64, fd: Int32, request: [UInt8], done: @escaping (UInt64, ProbeOutcome) -> Void) {
            self.id = id
            self.fd = fd
            self.request = request
            self.done = done
        }
    }

    /// Kubernetes reads no further for a status line either; a longer first line is no HTTP server.
    private static let maximumResponseBytes = 4096

    private let loop: EventLoop
    private var attempts: [UInt64: Attempt] = [:]
    private var readBuffer = [UInt8](repeating: 0, count: maximumResponseBytes)

    public init(loop: EventLoop) { self.loop = loop }

    /// Closes what is still open; no `done` is called.
    deinit {
        for id in Array(attempts.keys) { cancel(id) }
    }

    /// Attempts under way (for tests and leak checks).
    public var inFlight: Int { attempts.count }

    /// Starts an HTTP GET or TCP connect for `attempt`. `done(attempt, outcome)` is called exactly once
    /// on the loop thread, unless `cancel(attempt)` comes first; it may be called before `start` returns
    /// (an immediate failure such as ECONNREFUSED on loopback, or a bad address). `.exec` checks are
    /// the spawner's: one given here fails at once. `attempt` must not be under way already.
    public func start(_ attempt: UInt64, _ check: ProbeCheck, done: @escaping (UInt64, ProbeOutcome) -> Void) {
        precondition(attempts[attempt] == nil, "probe attempt \(attempt) is already under way")
        let host: String
        let port: Int
        let request: [UInt8]
        switch check {
        case .exec:
            return done(attempt, .failure("an exec probe is not a network probe"))
        case .tcpSocket(let h, let p):
            (host, port, request) = (h, p, [])
        case .httpGet(let h, let p, let path, let headers):
            guard Self.isPlain(path) && !path.contains(" ") else { return done(attempt, .failure("HTTP path holds a space or control character")) }
            guard headers.allSatisfy({ !$0.name.isEmpty && Self.isPlain($0.name) && Self.isPlain($0.value) }) else {
                return done(attempt, .failure("an HTTP header is empty or holds a control character"))
            }
            (host, port, request) = (h, p, Self.request(host: h, port: p, path: path, headers: headers))
        }
        guard let address = SocketAddress(host: host, port: port) else {
            let why = UInt16(exactly: port) == nil ? "port \(port) is out of range" : "host '\(host)' is not an IP address"
            return done(attempt, .failure(why))
        }
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return done(attempt, .failure(SystemError("socket").description)) }
        // EINPROGRESS (or EINTR: the connect goes on) is the usual answer; success shows as writable.
        if address.connect(fd) != 0 && errno != EINPROGRESS && errno != EINTR {
            let why = Self.reason(errno, "connect")
            close(fd)
            return done(attempt, .failure(why))
        }
        let a = Attempt(id: attempt, fd: fd, request: request, done: done)
        do {
            a.registration = try loop.add(fd, events: EventLoop.writable) { [unowned self] _ in self.handle(a) }
        } catch {
            close(fd)
            return done(attempt, .failure("\(error)"))
        }
        attempts[attempt] = a
    }

    /// Closes the attempt's socket if it is still open; its `done` is never called.
    public func cancel(_ attempt: UInt64) {
        guard let a = attempts.removeValue(forKey: attempt) else { return }
        release(a)
    }

    // MARK: - Driving an attempt

    private func handle(_ a: Attempt) {
        if !a.connected {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(a.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
            guard error == 0 else { return finish(a, .failure(Self.reason(error, "connect"))) }
            guard !a.request.isEmpty else { return finish(a, .success) }
            a.connected = true
        }
        if a.sent < a.request.count { send(a) } else { receive(a) }
    }

    /// Writes what the socket takes of the request; once all of it is out, waits for the response.
    private func send(_ a: Attempt) {
        while a.sent < a.request.count {
            let n = a.request.withUnsafeBytes { Glibc.send(a.fd, $0.baseAddress! + a.sent, $0.count - a.sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                a.sent += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                return
            } else {
                return finish(a, .failure(Self.reason(n < 0 ? errno : EPIPE, "send")))
            }
        }
        guard let r = a.registration else { return }
        do { try loop.modify(r, events: EventLoop.readable) } catch { finish(a, .failure("\(error)")) }
    }

    /// Reads until the status line decides, the peer closes, or the socket has nothing more for now.
    private func receive(_ a: Attempt) {
        while true {
            let room = Self.maximumResponseBytes - a.response.count
            let n = readBuffer.withUnsafeMutableBytes { recv(a.fd, $0.baseAddress, room, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return }
            if n < 0 { return finish(a, .failure(Self.reason(errno, "recv"))) }
            a.response += readBuffer[0..<n]
            if let outcome = Self.outcome(of: a.response, ended: n == 0) { return finish(a, outcome) }
        }
    }

    /// Forgets the attempt, closes its socket, then tells `done`, which may start or cancel others.
    private func finish(_ a: Attempt, _ outcome: ProbeOutcome) {
        guard attempts[a.id] === a else { return }
        attempts[a.id] = nil
        release(a)
        a.done(a.id, outcome)
    }

    private func release(_ a: Attempt) {
        if let r = a.registration { loop.forgetBeforeClose(r) }
        a.registration = nil
        close(a.fd)
    }

    // MARK: - HTTP

    /// `GET path HTTP/1.1`, then Host, User-Agent and Accept unless `headers` has its own (as
    /// Kubernetes does), `Connection: close`, `headers`, a blank line. An IPv6 host goes in brackets.
    private static func request(host: String, port: Int, path: String, headers: [HTTPHeader]) -> [UInt8] {
        let given = Set(headers.map { $0.name.lowercased() })
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        var text = "GET \(path.hasPrefix("/") ? path : "/" + path) HTTP/1.1\r\n"
        for (name, value) in [("Host", authority), ("User-Agent", "poolvisor-probe"), ("Accept", "*/*")] where !given.contains(name.lowercased()) {
            text += "\(name): \(value)\r\n"
        }
        text += "Connection: close\r\n"
        for header in headers { text += "\(header.name): \(header.value)\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// No CR, LF or other control character, which would end or split a request line.
    private static func isPlain(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F }
    }

    /// What the response so far decides: nil while the status line (`HTTP/1.x NNN reason`) may still
    /// come. 2xx and 3xx pass, as in Kubernetes. Header values are never quoted: they may hold tokens.
    private static func outcome(of bytes: [UInt8], ended: Bool) -> ProbeOutcome? {
        let malformed = ProbeOutcome.failure("malformed HTTP response")
        let version = Array("HTTP/1.".utf8)
        guard bytes.prefix(version.count).elementsEqual(version.prefix(bytes.count)) else { return malformed }
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            if ended { return .failure("connection closed before an HTTP response") }
            return bytes.count >= maximumResponseBytes ? malformed : nil
        }
        let line = bytes[..<newline].last == UInt8(ascii: "\r") ? bytes[..<(newline - 1)] : bytes[..<newline]
        let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
        let space = UInt8(ascii: " ")
        guard line.count >= 12, digits.contains(line[7]), line[8] == space, line[9...11].allSatisfy(digits.contains),
            line.count == 12 || line[12] == space
        else { return malformed }
        let code = line[9...11].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return (200..<400).contains(code) ? .success : .failure("HTTP \(code)")
    }

    /// A short reason for a failed socket call; errno's text beyond the common cases.
    private static func reason(_ error: Int32, _ operation: String) -> String {
        switch error {
        case ECONNREFUSED: "connection refused"
        case ECONNRESET, EPIPE: "connection reset"
        default: "\(operation): \(SystemError.message(error))"
        }
    }
}

/// An IPv4 or IPv6 address and port, from an IP literal (inet_pton; never DNS).
private enum SocketAddress {
    case v4(sockaddr_in)
    case v6(sockaddr_in6)

    init?(host: String, port: Int) {
        guard let port = UInt16(exactly: port) else { return nil }
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            self = .v4(v4)
        } else if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            self = .v6(v6)
        } else {
            return nil
        }
    }

    var family: Int32 {
        switch self {
        case .v4: AF_INET
        case .v6: AF_INET6
        }
    }

    /// connect(2) on `fd`: 0, or -1 with errno set.
    func connect(_ fd: Int32) -> Int32 {
        func connect<T>(_ address: T) -> Int32 {
            withUnsafePointer(to: address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<T>.size)) }
            }
        }
        switch self {
        case .v4(let address): return connect(address)
        case .v6(let address): return connect(address)
        }
    }
}
