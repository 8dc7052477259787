import Foundation
import Glibc
import PoolvisorCore
import Testing

@testable import PoolvisorLinux

// HTTP and TCP probes against real servers on loopback. Each test's servers are served by the same
// EventLoop the probes run on, so one thread turns the loop until the outcome is in, with a deadline.

@Suite struct NetworkProbesTests {
    @Test func http200IsSuccessAndSendsTheDefaultHeaders() throws {
        let t = try Harness()
        let server = try t.server(.answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: server.port, path: "/healthz", headers: [])) == .success)
        #expect(
            server.requests == [
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\nUser-Agent: poolvisor-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            ])
        #expect(socketsBetween(try #require(server.clientPorts.first), server.port) == 0)
    }

    @Test func http301IsSuccess() throws {
        let t = try Harness()
        let server = try t.server(.answer("HTTP/1.1 301 Moved Permanently\r\nLocation: /elsewhere\r\n\r\n"))
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: server.port, path: "/", headers: [])) == .success)
    }

    @Test func http500IsAFailureNamingTheCode() throws {
        let t = try Harness()
        let server = try t.server(.answer("HTTP/1.0 500 Internal Server Error\r\n\r\n"))
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: server.port, path: "/", headers: [])) == .failure("HTTP 500"))
    }

    @Test func aClosedPortIsRefused() throws {
        let t = try Harness()
        let port = try ClosedPort()
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: port.number, path: "/", headers: [])) == .failure("connection refused"))
        #expect(try t.probe(.tcpSocket(host: "127.0.0.1", port: port.number)) == .failure("connection refused"))
        #expect(t.probes.inFlight == 0)
    }

    @Test func aServerThatClosesWithoutAnsweringFails() throws {
        let t = try Harness()
        let server = try t.server(.closeWithoutAnswer)
        #expect(
            try t.probe(.httpGet(host: "127.0.0.1", port: server.port, path: "/", headers: []))
                == .failure("connection closed before an HTTP response"))
        #expect(server.requests.count == 1)
    }

    @Test func aResponseThatIsNotHTTPIsMalformed() throws {
        let t = try Harness()
        let ssh = try t.server(.answer("SSH-2.0-OpenSSH_9.2\r\n"))
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: ssh.port, path: "/", headers: [])) == .failure("malformed HTTP response"))
        let badCode = try t.server(.answer("HTTP/1.1 2000 OK\r\n\r\n"))
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: badCode.port, path: "/", headers: [])) == .failure("malformed HTTP response"))
        // 4 KiB and still no end of the status line: no more is read.
        let endless = try t.server(.answer("HTTP/1.1 200 " + String(repeating: "x", count: 8000)), close: false)
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: endless.port, path: "/", headers: [])) == .failure("malformed HTTP response"))
    }

    @Test func cancelledAttemptIsNeverReportedAndHoldsNoSocket() throws {
        let t = try Harness()
        let server = try t.server(.silent)
        var calls = 0
        t.probes.start(7, .httpGet(host: "127.0.0.1", port: server.port, path: "/", headers: [])) { _, _ in calls += 1 }
        try t.run { server.requests.count == 1 }
        let client = try #require(server.clientPorts.first)
        #expect(socketsBetween(client, server.port) == 1)
        #expect(t.probes.inFlight == 1)

        t.probes.cancel(7)
        #expect(t.probes.inFlight == 0)
        #expect(socketsBetween(client, server.port) == 0)
        try t.run { server.connectionCount == 0 }  // the server sees the probe's end of the connection go
        t.probes.cancel(7)  // a second cancel, and one of an unknown attempt, do nothing
        t.probes.cancel(8)
        #expect(calls == 0)
    }

    @Test func tcpConnectSucceedsAndCloses() throws {
        let t = try Harness()
        let server = try t.server(.silent)
        #expect(try t.probe(.tcpSocket(host: "127.0.0.1", port: server.port)) == .success)
        try t.run { server.acceptedCount == 1 && server.connectionCount == 0 }
        #expect(server.requests.isEmpty)
        #expect(socketsBetween(try #require(server.clientPorts.first), server.port) == 0)
    }

    @Test(.enabled(if: NetworkProbesTests.hasIPv6Loopback, "needs ::1")) func ipv6LoopbackWithABracketedHostHeader() throws {
        let t = try Harness()
        let server = try t.server(.answer("HTTP/1.1 204 No Content\r\n\r\n"), ipv6: true)
        #expect(try t.probe(.httpGet(host: "::1", port: server.port, path: "/v6", headers: [])) == .success)
        #expect(server.requests.first?.contains("\r\nHost: [::1]:\(server.port)\r\n") == true)
        #expect(try t.probe(.tcpSocket(host: "::1", port: server.port)) == .success)
    }

    @Test func aHostThatIsNotAnIPAddressFailsAtOnce() throws {
        let t = try Harness()
        for host in ["localhost", "[::1]", "127.0.0.1:80", ""] {
            var outcome: ProbeOutcome?
            t.probes.start(1, .tcpSocket(host: host, port: 80)) { _, o in outcome = o }
            #expect(outcome == .failure("host '\(host)' is not an IP address"))
        }
        var outcome: ProbeOutcome?
        t.probes.start(2, .tcpSocket(host: "127.0.0.1", port: 70000)) { _, o in outcome = o }
        #expect(outcome == .failure("port 70000 is out of range"))
        #expect(t.probes.inFlight == 0)
    }

    @Test func customHeadersReachTheServerAndReplaceHostAndUserAgent() throws {
        let t = try Harness()
        let server = try t.server(.answer("HTTP/1.1 200 OK\r\n\r\n"))
        let headers = [
            HTTPHeader(name: "X-Probe-Token", value: "s3cret"), HTTPHeader(name: "host", value: "app.example"),
            HTTPHeader(name: "User-Agent", value: "custom/1"),
        ]
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: server.port, path: "/ready?deep=1", headers: headers)) == .success)
        #expect(
            server.requests == [
                "GET /ready?deep=1 HTTP/1.1\r\nAccept: */*\r\nConnection: close\r\nX-Probe-Token: s3cret\r\nhost: app.example\r\nUser-Agent: custom/1\r\n\r\n"
            ])
        var outcome: ProbeOutcome?
        t.probes.start(9, .httpGet(host: "127.0.0.1", port: server.port, path: "/", headers: [HTTPHeader(name: "X-A", value: "a\r\nX-B: b")])) {
            outcome = $1
        }
        #expect(outcome == .failure("an HTTP header is empty or holds a control character"))
    }

    @Test func aRequestBiggerThanTheSocketBufferIsWrittenWhole() throws {
        let t = try Harness()
        let server = try t.server(.answer("HTTP/1.1 200 OK\r\n\r\n"))
        let big = String(repeating: "b", count: 8 << 20)
        #expect(try t.probe(.httpGet(host: "127.0.0.1", port: server.port, path: "/", headers: [HTTPHeader(name: "X-Big", value: big)])) == .success)
        #expect(server.requests.first?.contains("\r\nX-Big: \(big)\r\n\r\n") == true)
    }

    @Test func doneMayStartAndCancelOtherAttempts() throws {
        let t = try Harness()
        let ok = try t.server(.answer("HTTP/1.1 200 OK\r\n\r\n"))
        let silent = try t.server(.silent)
        let refused = try ClosedPort()
        var outcomes: [UInt64: ProbeOutcome] = [:]
        t.probes.start(1, .httpGet(host: "127.0.0.1", port: silent.port, path: "/", headers: [])) { outcomes[$0] = $1 }
        try t.run { silent.requests.count == 1 }
        // Attempt 2 is refused (perhaps before start returns); its done cancels 1 and starts 3, whose done starts 4.
        t.probes.start(2, .tcpSocket(host: "127.0.0.1", port: refused.number)) { attempt, outcome in
            outcomes[attempt] = outcome
            t.probes.cancel(1)
            t.probes.start(3, .tcpSocket(host: "127.0.0.1", port: ok.port)) { attempt, outcome in
                outcomes[attempt] = outcome
                t.probes.start(4, .httpGet(host: "127.0.0.1", port: ok.port, path: "/", headers: [])) { outcomes[$0] = $1 }
            }
        }
        try t.run { outcomes.count == 3 && t.probes.inFlight == 0 }
        #expect(outcomes == [2: .failure("connection refused"), 3: .success, 4: .success])
    }

    /// Whether this host can listen on ::1 (containers without IPv6 cannot).
    static let hasIPv6Loopback: Bool = {
        guard let listener = try? Listener(ipv6: true) else { return false }
        listener.close()
        return true
    }()
}

private struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A loop, the probes on it, and the servers a test starts on it (closed with the harness).
private final class Harness {
    let loop: EventLoop
    let probes: NetworkProbes
    private var servers: [TestServer] = []
    private var nextAttempt: UInt64 = 100

    init() throws {
        loop = try EventLoop()
        probes = NetworkProbes(loop: loop)
    }

    deinit {
        for server in servers { server.close() }
    }

    func server(_ behaviour: TestServer.Behaviour, close: Bool = true, ipv6: Bool = false) throws -> TestServer {
        let server = try TestServer(loop: loop, behaviour: behaviour, closeAfterAnswer: close, ipv6: ipv6)
        servers.append(server)
        return server
    }

    /// Runs one attempt to its outcome, checking that `done` is called once and the socket is gone.
    func probe(_ check: ProbeCheck) throws -> ProbeOutcome {
        nextAttempt += 1
        var outcomes: [ProbeOutcome] = []
        probes.start(nextAttempt, check) { attempt, outcome in
            #expect(attempt == self.nextAttempt)
            outcomes.append(outcome)
        }
        try run { !outcomes.isEmpty }
        #expect(probes.inFlight == 0)
        loop.runOnce(timeoutMilliseconds: 0)  // a second done would come now
        #expect(outcomes.count == 1)
        return outcomes[0]
    }

    /// Turns the loop until `condition` holds; fails after `timeout`.
    func run(timeout: Duration = .seconds(10), until condition: () -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw TestFailure("condition not met within \(timeout)") }
            loop.runOnce(timeoutMilliseconds: Int32(min(left.components.seconds * 1000 + 1, 100)))
        }
    }
}

/// A listening TCP socket on loopback, non-blocking, on an ephemeral port.
private struct Listener {
    let fd: Int32
    let port: Int

    init(ipv6: Bool, listening: Bool = true) throws {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr)
        var v6 = sockaddr_in6()
        v6.sin6_family = sa_family_t(AF_INET6)
        inet_pton(AF_INET6, "::1", &v6.sin6_addr)
        let bound = ipv6 ? withSocketAddress(&v6) { bind(fd, $0, $1) } : withSocketAddress(&v4) { bind(fd, $0, $1) }
        guard bound == 0, !listening || listen(fd, 16) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw TestFailure("bind/listen: errno \(e)")
        }
        self.fd = fd
        port = localPort(of: fd)
    }

    func close() { Glibc.close(fd) }
}

/// A bound port nobody listens on: connecting is refused, and no other test can take the port meanwhile.
private final class ClosedPort {
    private let listener: Listener
    var number: Int { listener.port }
    init() throws { listener = try Listener(ipv6: false, listening: false) }
    deinit { listener.close() }
}

/// An HTTP server of one trick on the test's loop: it reads each request's head and then answers,
/// closes, or stays silent.
private final class TestServer {
    enum Behaviour {
        case answer(String)
        /// Reads the request, then closes (a FIN; closing with the request unread would send a reset).
        case closeWithoutAnswer
        /// Reads and never answers.
        case silent
    }

    private struct Connection {
        var registration: EventLoop.Registration
        var received: [UInt8] = []
    }

    let port: Int
    /// Request heads received, in order.
    private(set) var requests: [String] = []
    /// The probes' ends of the accepted connections.
    private(set) var clientPorts: [Int] = []
    private(set) var acceptedCount = 0
    var connectionCount: Int { connections.count }

    private let loop: EventLoop
    private let listener: Listener
    private let behaviour: Behaviour
    private let closeAfterAnswer: Bool
    private var registration: EventLoop.Registration?
    private var connections: [Int32: Connection] = [:]

    init(loop: EventLoop, behaviour: Behaviour, closeAfterAnswer: Bool, ipv6: Bool) throws {
        self.loop = loop
        self.behaviour = behaviour
        self.closeAfterAnswer = closeAfterAnswer
        listener = try Listener(ipv6: ipv6)
        port = listener.port
        registration = try loop.add(listener.fd) { [unowned self] _ in self.accept() }
    }

    func close() {
        for fd in Array(connections.keys) { drop(fd) }
        if let registration { loop.remove(registration) }
        registration = nil
        listener.close()
    }

    private func accept() {
        let fd = Glibc.accept(listener.fd, nil, nil)
        guard fd >= 0 else { return }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        acceptedCount += 1
        clientPorts.append(peerPort(of: fd))
        guard let r = try? loop.add(fd, { [unowned self] _ in self.receive(fd) }) else { return }
        connections[fd] = Connection(registration: r)
    }

    private func receive(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        let n = recv(fd, &buffer, buffer.count, 0)
        if n < 0 && errno == EAGAIN { return }
        guard n > 0, var c = connections[fd] else { return drop(fd) }  // end of stream, or reset
        let searchFrom = max(0, c.received.count - 3)
        c.received += buffer[0..<n]
        connections[fd] = c
        let end = Array("\r\n\r\n".utf8)
        guard let at = c.received[searchFrom...].firstRange(of: end) else { return }
        requests.append(String(decoding: c.received[..<at.upperBound], as: UTF8.self))
        switch behaviour {
        case .answer(let text):
            let bytes = Array(text.utf8)
            #expect(send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count)
            if closeAfterAnswer { drop(fd) }
        case .closeWithoutAnswer:
            drop(fd)
        case .silent:
            break
        }
    }

    private func drop(_ fd: Int32) {
        guard let c = connections.removeValue(forKey: fd) else { return }
        loop.remove(c.registration)
        Glibc.close(fd)
    }
}

private func withSocketAddress<T, R>(_ address: inout T, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<T>.size)) } }
}

/// The port of a socket's own end (`peer` false) or of the other end, IPv4 or IPv6; 0 if none.
private func port(of fd: Int32, peer: Bool) -> Int {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let ok = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length) }
    }
    // sin_port and sin6_port are both at offset 2.
    guard ok == 0, [AF_INET, AF_INET6].contains(Int32(storage.ss_family)) else { return 0 }
    return withUnsafeBytes(of: storage) { Int(UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self))) }
}

private func localPort(of fd: Int32) -> Int { port(of: fd, peer: false) }
private func peerPort(of fd: Int32) -> Int { port(of: fd, peer: true) }

/// How many fds of this process (from /proc/self/fd) are a socket from local port `client` to port
/// `server`: the probe's own socket, told apart from every other test's fds, which run alongside.
private func socketsBetween(_ client: Int, _ server: Int) -> Int {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return fds.compactMap { Int32($0) }.filter { localPort(of: $0) == client && peerPort(of: $0) == server }.count
}
