import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// `GET /metrics` over HTTP/1.1 on the event loop: nothing runs between scrapes (the body is built
/// when a request has arrived whole), a few connections at most, each with a deadline, so a slow or
/// stuck scraper costs its own socket and nothing else. Anything but `GET /metrics` is answered 404
/// or 405; every answer closes the connection.
public final class MetricsServer {
    private final class Connection {
        let fd: Int32
        var registration: EventLoop.Registration?
        var input: [UInt8] = []
        var output: [UInt8] = []
        var sent = 0
        let deadline: Instant

        init(fd: Int32, deadline: Instant) {
            self.fd = fd
            self.deadline = deadline
        }
    }

    /// Scrapers served at once; more are told 503 and closed.
    public static let maximumConnections = 4
    /// A request line and headers larger than this are refused.
    static let maximumRequest = 8192
    /// From accept to the last byte of the answer.
    public static let deadline = Duration.seconds(5)
    /// How long accepting pauses when the process is out of file descriptors.
    static let pauseAfterExhaustion = Duration.seconds(1)

    public let address: ListenAddress
    private let loop: EventLoop
    private let listenFD: Int32
    private var listener: EventLoop.Registration?
    private let timer: DeadlineTimer
    private var connections: [Int32: Connection] = [:]
    private var resumeAt: Instant?
    private let body: () -> [UInt8]
    private var readBuffer = [UInt8](repeating: 0, count: 4096)

    /// Listens on `address`; `body` builds the exposition for each scrape.
    /// A non-blocking socket listening on `address`.
    private static func listen(on address: ListenAddress) throws -> Int32 {
        let v6 = address.host.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var rc: Int32
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = UInt16(address.port).bigEndian
            inet_pton(AF_INET6, address.host, &a.sin6_addr)
            rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = UInt16(address.port).bigEndian
            inet_pton(AF_INET, address.host, &a.sin_addr)
            rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        if rc == 0 { rc = Glibc.listen(fd, 16) }
        guard rc == 0 else {
            let error = SystemError("listen on \(address) for metrics")
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// The listening socket, for an in-place upgrade to hand over.
    public var listeningSocket: Int32 { listenFD }

    /// - Parameter adopting: a listening socket handed over by the image before an in-place upgrade.
    public init(address: ListenAddress, loop: EventLoop, adopting: Int32? = nil, body: @escaping () -> [UInt8]) throws {
        self.address = address
        self.loop = loop
        self.body = body
        let fd = try adopting ?? Self.listen(on: address)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        listenFD = fd
        timer = try DeadlineTimer()
        listener = try loop.add(fd) { [unowned self] _ in self.acceptConnections() }
        try loop.add(timer.fd) { [unowned self] _ in
            self.timer.acknowledge()
            self.expire()
        }
    }

    deinit { close() }

    /// Scrapers connected now.
    public var connectionCount: Int { connections.count }

    public func close() {
        for fd in Array(connections.keys) { drop(fd) }
        if let listener {
            loop.remove(listener)
            Glibc.close(listenFD)
            self.listener = nil
        }
    }

    // MARK: - Connections

    private func acceptConnections() {
        for _ in 0..<16 {
            let fd = cshim_accept(listenFD)
            if fd < 0 {
                switch -fd {
                case EAGAIN: return
                case EINTR, ECONNABORTED: continue
                default:  // out of file descriptors or memory: pause, or the loop would spin on it
                    if let listener { try? loop.modify(listener, events: 0) }
                    resumeAt = MonotonicClock.now() + Self.pauseAfterExhaustion
                    armTimer()
                    return
                }
            }
            guard connections.count < Self.maximumConnections else {
                let busy = Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
                _ = send(fd, busy, busy.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                Glibc.close(fd)
                continue
            }
            let c = Connection(fd: fd, deadline: MonotonicClock.now() + Self.deadline)
            do {
                c.registration = try loop.add(fd) { [unowned self] _ in self.serve(fd) }
            } catch {
                Glibc.close(fd)
                continue
            }
            connections[fd] = c
            armTimer()
        }
    }

    private func serve(_ fd: Int32) {
        guard let c = connections[fd] else { return }
        if c.output.isEmpty {
            read(c)
        } else {
            write(c)
        }
    }

    private func read(_ c: Connection) {
        while true {
            let n = readBuffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return }
            guard n > 0 else { return drop(c.fd) }
            c.input += readBuffer[0..<n]
            if let end = Self.endOfHeaders(c.input) {
                c.output = respond(to: c.input[..<end])
                c.input = []
                return write(c)
            }
            if c.input.count > Self.maximumRequest {
                c.output = Self.answer(431, "Request Header Fields Too Large", "")
                c.input = []
                return write(c)
            }
        }
    }

    private func write(_ c: Connection) {
        while c.sent < c.output.count {
            let n = c.output.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.sent, $0.count - c.sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                c.sent += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                if let r = c.registration { try? loop.modify(r, events: EventLoop.writable) }
                return
            } else {
                return drop(c.fd)
            }
        }
        drop(c.fd)
    }

    private func drop(_ fd: Int32) {
        guard let c = connections.removeValue(forKey: fd) else { return }
        if let r = c.registration { loop.forgetBeforeClose(r) }
        Glibc.close(fd)
        armTimer()
    }

    /// Connections past their deadline are closed; accepting resumes after a pause.
    private func expire() {
        let now = MonotonicClock.now()
        for (fd, c) in connections where c.deadline <= now { drop(fd) }
        if let resume = resumeAt, resume <= now, let listener {
            resumeAt = nil
            try? loop.modify(listener, events: EventLoop.readable)
        }
        armTimer()
    }

    private func armTimer() {
        let next = ([resumeAt].compactMap { $0 } + connections.values.map(\.deadline)).min()
        timer.arm(at: next)
    }

    // MARK: - HTTP

    /// The index just past the blank line that ends the request's headers.
    static func endOfHeaders(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 3..<bytes.count where bytes[i] == 10 {
            if bytes[i - 1] == 13 && bytes[i - 2] == 10 && bytes[i - 3] == 13 { return i + 1 }
            if bytes[i - 1] == 10 { return i + 1 }  // a bare LF, as some clients send
        }
        return nil
    }

    /// GET /metrics (a query string ignored): the exposition; another path 404; another method 405.
    private func respond(to request: ArraySlice<UInt8>) -> [UInt8] {
        let line = request.prefix { $0 != 13 && $0 != 10 }.split(separator: 32, omittingEmptySubsequences: true)
        guard line.count == 3, line[2].starts(with: Array("HTTP/1.".utf8)) else { return Self.answer(400, "Bad Request", "bad request\n") }
        let target = line[1].prefix { $0 != UInt8(ascii: "?") }
        guard target.elementsEqual("/metrics".utf8) else { return Self.answer(404, "Not Found", "poolvisor serves GET /metrics only\n") }
        guard line[0].elementsEqual("GET".utf8) else {
            return Self.answer(405, "Method Not Allowed", "GET only\n", extra: "Allow: GET\r\n")
        }
        let text = body()
        var out = Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(text.count)\r\nConnection: close\r\n\r\n".utf8)
        out.reserveCapacity(out.count + text.count)
        out += text
        return out
    }

    static func answer(_ code: Int, _ reason: String, _ text: String, extra: String = "") -> [UInt8] {
        Array("HTTP/1.1 \(code) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(text.utf8.count)\r\n\(extra)Connection: close\r\n\r\n\(text)".utf8)
    }
}
