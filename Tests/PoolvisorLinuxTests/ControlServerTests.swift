import Foundation
import Glibc
import PoolvisorConfig
import PoolvisorCore
import Testing

@testable import PoolvisorControl
@testable import PoolvisorDaemon
@testable import PoolvisorLinux
@testable import PoolvisorScalers
@testable import PoolvisorSystem

// The control socket on real UNIX sockets: a ControlServer on its own EventLoop thread in this process,
// ControlClient or raw sockets on the test's thread, and python3 run as `nobody` through setpriv for
// the peers that are not root. Every wait is a condition with a deadline.

@Suite(.serialized) struct ControlServerTests {
    @Test func roundTripThroughTheClient() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        let answer = try ControlClient.request(socket: t.path, line: Array("hello".utf8), timeout: .seconds(5))
        #expect(String(decoding: answer, as: UTF8.self) == "echo:hello")
        let seen = try t.requests()
        #expect(seen.count == 1)
        #expect(seen.first?.request == "hello")
        #expect(seen.first?.access == .full)
        #expect(seen.first?.peer.uid == geteuid())
        #expect(seen.first?.peer.pid == getpid())
    }

    @Test func aFollowerGetsEveryBroadcastAndOneThatDoesNotReadIsDroppedNotWaitedFor() throws {
        let t = try TestServer(maximumPendingOutputBytes: 256 * 1024)
        defer { t.shutdown() }
        let reader = try RawClient(t.path)
        let stuck = try RawClient(t.path)
        for c in [reader, stuck] {
            #expect(c.send("follow\n"))
            #expect(c.readLine() == "following")
        }
        try t.waitUntil { $0.followerCount == 2 }
        for n in 0..<3 { try t.sync { $0.broadcast(Array("event \(n)".utf8), pool: nil) } }
        for n in 0..<3 { #expect(reader.readLine() == "event \(n)") }
        // The stuck one reads nothing: once 256 KiB wait for it, it is dropped; the loop never blocks.
        let chunk = [UInt8](repeating: UInt8(ascii: "e"), count: 64 * 1024)
        for _ in 0..<64 {
            try t.sync { $0.broadcast(chunk, pool: nil) }
            _ = reader.readLine(timeout: .seconds(10))
        }
        try t.waitUntil { $0.followerCount == 1 }
        // No request deadline applies to a follower: the reader is still there.
        try t.sync { $0.broadcast(Array("last".utf8), pool: nil) }
        #expect(reader.readLine() == "last")
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        let client = try RawClient(t.path)
        let requests = (0..<200).map { "request \($0)" }
        #expect(client.send(requests.map { $0 + "\n" }.joined()))
        for request in requests {
            #expect(client.readLine() == "echo:\(request)")
        }
    }

    @Test func aSilentClientDoesNotDelayAnother() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        let silent = try RawClient(t.path)
        #expect(silent.send("half a requ"))  // a partial line, then nothing
        try t.waitUntil { $0.connectionCount == 1 }
        let answer = try ControlClient.request(socket: t.path, line: Array("next".utf8), timeout: .seconds(2))
        #expect(String(decoding: answer, as: UTF8.self) == "echo:next")
        #expect(silent.isOpen)
    }

    @Test func anOversizedRequestGetsAnErrorAndIsClosed() throws {
        let t = try TestServer(maximumRequestBytes: 1000)
        defer { t.shutdown() }
        // Over the limit with a newline: answered in order after the request before it.
        let a = try RawClient(t.path)
        #expect(a.send("ok\n" + String(repeating: "x", count: 1001) + "\nnever\n"))
        #expect(a.readLine() == "echo:ok")
        #expect(a.readLine() == #"{"v":1,"ok":false,"error":"request too long (limit 1000 bytes)"}"#)
        #expect(a.waitForClose())
        // Over the limit without a newline: the server does not wait for one.
        let b = try RawClient(t.path)
        #expect(b.send(String(repeating: "y", count: 3000)))
        #expect(b.readLine() == #"{"v":1,"ok":false,"error":"request too long (limit 1000 bytes)"}"#)
        #expect(b.waitForClose())
        // Exactly at the limit is fine.
        let c = try RawClient(t.path)
        #expect(c.send(String(repeating: "z", count: 1000) + "\n"))
        #expect(c.readLine() == "echo:" + String(repeating: "z", count: 1000))
        #expect(try t.requests().map(\.request) == ["ok", String(repeating: "z", count: 1000)])
    }

    @Test func anIdleConnectionIsClosed() throws {
        let t = try TestServer(idleTimeout: .milliseconds(200))
        defer { t.shutdown() }
        let start = ContinuousClock.now
        let idle = try RawClient(t.path)
        let partial = try RawClient(t.path)
        #expect(partial.send("no newline yet"))
        #expect(idle.waitForClose(timeout: .seconds(5)))
        #expect(partial.waitForClose(timeout: .seconds(5)))
        #expect(ContinuousClock.now - start >= .milliseconds(200))
        try t.waitUntil { $0.connectionCount == 0 }
    }

    @Test func aHalfClosedClientStillGetsItsAnswer() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        let client = try RawClient(t.path)
        #expect(client.send("one\ntwo\n"))
        shutdown(client.fd, Int32(SHUT_WR))
        #expect(client.readLine() == "echo:one")
        #expect(client.readLine() == "echo:two")
        #expect(client.waitForClose())
    }

    @Test func aClientThatDoesNotReadDoesNotBlockOthers() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        let stuck = try RawClient(t.path)
        #expect(stuck.send(String(repeating: "big 1048576\n", count: 20)))
        try t.waitUntil { $0.pendingOutputBytes > 0 }
        let answer = try ControlClient.request(socket: t.path, line: Array("meanwhile".utf8), timeout: .seconds(2))
        #expect(String(decoding: answer, as: UTF8.self) == "echo:meanwhile")
        // Backpressure: one answer (plus what was gathered with it) waits, not twenty.
        let pending = try t.sync { $0.pendingOutputBytes }
        #expect(pending > 0 && pending <= 1_048_577 + 64 * 1024)
        #expect(stuck.isOpen)
    }

    @Test(.needsRoot) func aLargeAnswerToRootLeavesAtOnceThoughTheClientHasNotRead() throws {
        // A status of 10,000 workers is 2.8 MB; a socket takes about 200 KB at a time. A client slow
        // to get the CPU would hold it in poolvisor, and take a loop turn per piece.
        let t = try TestServer()
        defer { t.shutdown() }
        let client = try RawClient(t.path)
        #expect(client.send("big 2000000\nafter\n"))
        #expect(poll(timeout: .seconds(5)) { (try? t.requests().count) == 1 })
        #expect(try t.sync { $0.pendingOutputBytes } == 0)
        #expect(client.readLine(timeout: .seconds(10)) == String(repeating: "x", count: 2_000_000))
        #expect(client.readLine() == "echo:after")
    }

    @Test func anUnreadAnswerOverTheCapDropsTheConnection() throws {
        let t = try TestServer(maximumPendingOutputBytes: 256 * 1024)
        defer { t.shutdown() }
        let stuck = try RawClient(t.path)
        #expect(stuck.send("big 4194304\n"))
        // The client reads nothing, so the answer piles up past the cap and the server hangs up.
        // (Reading here, as waitForClose does, could drain the answer before it reached the cap.)
        #expect(poll(timeout: .seconds(10)) { !stuck.isOpen })
        try t.waitUntil { $0.connectionCount == 0 }
    }

    @Test func connectionsOverTheLimitAreTurnedAway() throws {
        let t = try TestServer(maximumConnections: 2)
        defer { t.shutdown() }
        let a = try RawClient(t.path)
        let b = try RawClient(t.path)
        try t.waitUntil { $0.connectionCount == 2 }
        let answer = try ControlClient.request(socket: t.path, line: Array("third".utf8), timeout: .seconds(2))
        #expect(String(decoding: answer, as: UTF8.self) == #"{"v":1,"ok":false,"error":"too many control connections (limit 2)"}"#)
        #expect(a.isOpen && b.isOpen)
        #expect(try t.requests().isEmpty)
    }

    // MARK: - Deadlines: a request arrives whole, soon

    @Test func aRequestThatDoesNotArriveWholeIsCutOffAtTheDeadline() throws {
        let t = try TestServer(requestTimeout: .milliseconds(300))
        defer { t.shutdown() }
        let start = ContinuousClock.now
        let silent = try RawClient(t.path)
        let oneByte = try RawClient(t.path)
        let half = try RawClient(t.path)
        #expect(oneByte.send("{"))
        #expect(half.send(#"{"v":1,"command":"sta"#))
        try t.waitUntil { $0.connectionCount == 3 }
        let timedOut = #"{"v":1,"ok":false,"error":"request not received whole within 300 ms"}"#
        for client in [silent, oneByte, half] {
            #expect(client.readLine() == timedOut)
            #expect(client.waitForClose())
        }
        #expect(ContinuousClock.now - start >= .milliseconds(300))
        try t.waitUntil { $0.connectionCount == 0 }
        #expect(try t.requests().isEmpty)
    }

    @Test func aTricklerIsCutOffAtTheDeadlineThoughNeverIdle() throws {
        // A byte every 100 ms keeps clear of the 300 ms idle timeout; the 500 ms request deadline does not care.
        let t = try TestServer(requestTimeout: .milliseconds(500), idleTimeout: .milliseconds(300))
        defer { t.shutdown() }
        let start = ContinuousClock.now
        let trickler = try RawClient(t.path)
        var line: String?
        var sent = 0
        while line == nil && ContinuousClock.now - start < .seconds(5) {
            guard trickler.send("x") else {
                line = trickler.readLine()  // closed between two bytes: the reason is waiting to be read
                break
            }
            sent += 1
            line = trickler.readLine(timeout: .milliseconds(100))  // the pace, and the check for an answer
        }
        #expect(line == #"{"v":1,"ok":false,"error":"request not received whole within 500 ms"}"#)
        #expect(trickler.waitForClose())
        #expect(ContinuousClock.now - start >= .milliseconds(500))
        #expect(sent >= 4)
        try t.waitUntil { $0.connectionCount == 0 }
    }

    @Test func eachRequestHasItsOwnDeadlineFromThePreviousAnswer() throws {
        let t = try TestServer(requestTimeout: .milliseconds(400))
        defer { t.shutdown() }
        let start = ContinuousClock.now
        let client = try RawClient(t.path)
        // Ten requests 150 ms apart: the connection lives well past one deadline.
        var lastAnswer = ContinuousClock.now
        for n in 0..<10 {
            #expect(client.send("request \(n)\n"))
            #expect(client.readLine() == "echo:request \(n)")
            lastAnswer = ContinuousClock.now
            if n < 9 { #expect(client.readLine(timeout: .milliseconds(150)) == nil) }  // the pause; nothing comes unasked
        }
        #expect(ContinuousClock.now - start >= .milliseconds(1350))
        // Then nothing: 400 ms after the last answer (which the server sent a moment before it was read
        // here), it is closed.
        #expect(client.readLine() == #"{"v":1,"ok":false,"error":"request not received whole within 400 ms"}"#)
        #expect(ContinuousClock.now - lastAnswer >= .milliseconds(350))
        #expect(client.waitForClose())
    }

    @Test func aLateLoopServesARequestThatIsWholeWhenItLooks() throws {
        // The loop is busy past the deadline (as in a long reload) and the request arrives meanwhile,
        // after the deadline: the server was late, not the client, so the request is answered.
        let t = try TestServer(requestTimeout: .milliseconds(200))
        defer { t.shutdown() }
        let client = try RawClient(t.path)
        try t.waitUntil { $0.connectionCount == 1 }
        try t.sync { _ in
            Thread.sleep(forTimeInterval: 0.3)  // the busy loop: the deadline passes
            _ = client.send("late but whole\n")
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(client.readLine() == "echo:late but whole")
        #expect(client.isOpen)
    }

    // MARK: - Limits: read-only users cannot crowd out root

    @Test(.needsRoot, arguments: [0, 100])
    func rootIsServedWhileReadOnlyUsersHoldEveryConnectionTheyMay(trickleMilliseconds: Int) throws {
        // 210 connections from 7 members of the group, silent or trickling a byte every 100 ms, and a
        // request deadline long enough that it does not come into it: the limits alone keep root served.
        let t = try TestServer(group: usersGroup, requestTimeout: .seconds(60), idleTimeout: .seconds(60))
        defer { t.shutdown() }
        let peers = try (60001...60007).map { uid in
            try ReadOnlyPeers(t.path, uid: uid, connections: 30, trickle: .milliseconds(trickleMilliseconds))
        }
        defer { peers.forEach { $0.stop() } }
        // All made, and all but 48 refused (a peer reports a refusal once it has read the line and the end).
        #expect(poll(timeout: .seconds(10)) { peers.map { $0.outcomes().filter { $0 != "open" }.count }.reduce(0, +) == 210 - 48 })
        try t.waitUntil { $0.readOnlyConnectionCount == 48 && $0.connectionCount == 48 }
        let outcomes = peers.map { $0.outcomes() }
        #expect(outcomes.allSatisfy { $0.count == 30 })
        #expect(outcomes.allSatisfy { $0.filter { $0 == "open" }.count <= 8 })
        #expect(outcomes.joined().filter { $0 == "open" }.count == 48)
        let refusals = Set(outcomes.joined().filter { $0 != "open" })
        let allowed = Set(
            (60001...60007).map { #"{"v":1,"ok":false,"error":"too many control connections from uid \#($0) (limit 8 per user)"}"# }
                + [#"{"v":1,"ok":false,"error":"too many control connections from read-only users (limit 48)"}"#]
        )
        #expect(refusals.isSubset(of: allowed), "\(refusals.subtracting(allowed))")
        #expect(refusals.contains(#"{"v":1,"ok":false,"error":"too many control connections from read-only users (limit 48)"}"#))

        // Root is answered at once, again and again.
        for n in 0..<5 {
            let start = ContinuousClock.now
            let answer = try ControlClient.request(socket: t.path, line: Array("status \(n)".utf8), timeout: .seconds(2))
            #expect(String(decoding: answer, as: UTF8.self) == "echo:status \(n)")
            #expect(ContinuousClock.now - start < .seconds(1))
        }
        // The 16 connections read-only users cannot take are root's; the limit for all still holds.
        // The clients above have hung up; the server drops each when it reads the end.
        try t.waitUntil { $0.connectionCount == 48 }
        let rootClients = try (0..<16).map { _ in try RawClient(t.path) }
        try t.waitUntil { $0.connectionCount == 64 }
        let over = try ControlClient.request(socket: t.path, line: Array("one more".utf8), timeout: .seconds(2))
        #expect(String(decoding: over, as: UTF8.self) == #"{"v":1,"ok":false,"error":"too many control connections (limit 64)"}"#)
        #expect(rootClients.allSatisfy { $0.isOpen })
        #expect(try t.sync { $0.readOnlyConnectionCount } == 48)
    }

    @Test(.needsRoot) func aReadOnlyUserGetsAFewConnectionsAndReadOnlyUsersAFewMore() throws {
        let t = try TestServer(group: usersGroup, maximumReadOnlyConnections: 3, maximumConnectionsPerUser: 2)
        defer { t.shutdown() }
        let open = "open"
        // One user: the third connection is one too many. Connections are accepted in the order made.
        let nobody = try ReadOnlyPeers(t.path, uid: 65534, connections: 3)
        defer { nobody.stop() }
        let perUser = #"{"v":1,"ok":false,"error":"too many control connections from uid 65534 (limit 2 per user)"}"#
        #expect(poll(timeout: .seconds(10)) { nobody.outcomes() == [open, open, perUser] }, "\(nobody.outcomes())")
        // Another user: one more read-only connection fits, then none.
        let other = try ReadOnlyPeers(t.path, uid: 60001, connections: 2)
        defer { other.stop() }
        let allReadOnly = #"{"v":1,"ok":false,"error":"too many control connections from read-only users (limit 3)"}"#
        #expect(poll(timeout: .seconds(10)) { other.outcomes() == [open, allReadOnly] }, "\(other.outcomes())")
        try t.waitUntil { $0.readOnlyConnectionCount == 3 && $0.connectionCount == 3 }
        // Root is not counted among them.
        let answer = try ControlClient.request(socket: t.path, line: Array("root".utf8), timeout: .seconds(2))
        #expect(String(decoding: answer, as: UTF8.self) == "echo:root")
        // A closed connection gives its place back.
        nobody.stop()
        try t.waitUntil { $0.readOnlyConnectionCount == 1 }
        let third = try ReadOnlyPeers(t.path, uid: 60002, connections: 3)
        defer { third.stop() }
        let thirdPerUser = #"{"v":1,"ok":false,"error":"too many control connections from uid 60002 (limit 2 per user)"}"#
        #expect(poll(timeout: .seconds(10)) { third.outcomes() == [open, open, thirdPerUser] }, "\(third.outcomes())")
        try t.waitUntil { $0.readOnlyConnectionCount == 3 }
    }

    @Test(.needsRoot) func aReadOnlyConnectionCutOffAtTheDeadlineGivesItsPlaceBack() throws {
        let t = try TestServer(group: usersGroup, requestTimeout: .milliseconds(300), maximumConnectionsPerUser: 1)
        defer { t.shutdown() }
        let first = try ReadOnlyPeers(t.path, uid: 65534, connections: 2, trickle: .milliseconds(50))
        defer { first.stop() }
        let timedOut = #"{"v":1,"ok":false,"error":"request not received whole within 300 ms"}"#
        let perUser = #"{"v":1,"ok":false,"error":"too many control connections from uid 65534 (limit 1 per user)"}"#
        #expect(poll(timeout: .seconds(10)) { first.outcomes() == [timedOut, perUser] }, "\(first.outcomes())")
        try t.waitUntil { $0.readOnlyConnectionCount == 0 && $0.connectionCount == 0 }
        #expect(try askAsNobody(t.path, groups: [usersGroup]) == "echo:who")
    }

    // MARK: - Duplicate keys

    @Test func aRequestWithADuplicateKeyRunsNothing() throws {
        let t = try TestServer(speaksProtocol: true)
        defer { t.shutdown() }
        let client = try RawClient(t.path)
        #expect(client.send(#"{"v":1,"command":"status","command":"reload"}"# + "\n" + #"{"v":1,"command":"status"}"# + "\n"))
        #expect(client.readLine() == #"{"v":1,"ok":false,"error":"bad request: invalid JSON at byte 26: duplicate key 'command'"}"#)
        #expect(client.readLine() == #"{"v":1,"ok":true,"ran":"status"}"#)
        #expect(try t.requests().map(\.request) == [#"{"v":1,"command":"status"}"#])
    }

    // MARK: - The socket file

    @Test func aStaleSocketFileIsReplaced() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/control.sock"
        try makeStaleSocket(at: path)
        let t = try TestServer(path: path)
        defer { t.shutdown() }
        let answer = try ControlClient.request(socket: path, line: Array("fresh".utf8), timeout: .seconds(5))
        #expect(String(decoding: answer, as: UTF8.self) == "echo:fresh")
    }

    @Test func aLiveSocketIsNotTakenOver() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        let otherLoop = try EventLoop()
        #expect {
            _ = try ControlServer(path: t.path, group: nil, loop: otherLoop) { _, _, _ in [] }
        } throws: { error in
            "\(error)" == "another poolvisor is already serving \(t.path)"
        }
        let answer = try ControlClient.request(socket: t.path, line: Array("still".utf8), timeout: .seconds(5))
        #expect(String(decoding: answer, as: UTF8.self) == "echo:still")
    }

    @Test func aFileThatIsNotASocketIsLeftAlone() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/control.sock"
        try "precious".write(toFile: path, atomically: false, encoding: .utf8)
        let loop = try EventLoop()
        #expect {
            _ = try ControlServer(path: path, group: nil, loop: loop) { _, _, _ in [] }
        } throws: { error in
            "\(error)".hasPrefix("\(path) exists and is not a socket")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")
    }

    @Test func aPathTooLongForSunPathIsNamed() throws {
        let path = "/tmp/" + String(repeating: "d", count: 120) + "/control.sock"
        let loop = try EventLoop()
        #expect {
            _ = try ControlServer(path: path, group: nil, loop: loop) { _, _, _ in [] }
        } throws: { error in
            "\(error)" == "control socket path is 138 bytes long; a UNIX socket address holds at most 107: \(path)"
        }
    }

    @Test(.needsRoot) func theSocketHasMode0660AndTheGroup() throws {
        let t = try TestServer(group: usersGroup)
        defer { t.shutdown() }
        var st = stat()
        #expect(lstat(t.path, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFSOCK)
        #expect(st.st_mode & 0o7777 == 0o660)
        #expect(st.st_uid == geteuid())
        #expect(st.st_gid == usersGroup)
        #expect(lstat(t.directory, &st) == 0 && st.st_mode & 0o7777 == 0o755)  // created like mkdir -p
    }

    // MARK: - Peers that are not root

    @Test(.needsRoot) func theModeKeepsOthersOutAndTheClientSaysSo() throws {
        let t = try TestServer(group: usersGroup)
        defer { t.shutdown() }
        // ControlClient itself, on a thread whose file-system identity is nobody's.
        let result = try asNobodyOnOwnThread {
            Result { () throws(ControlClientError) in
                try ControlClient.request(socket: t.path, line: Array("who".utf8), timeout: .seconds(5))
            }
        }
        #expect(throws: ControlClientError.self) { try result.get() }
        if case .failure(let error) = result {
            #expect(error.description == "permission denied on \(t.path): you need to be root, the user poolvisor runs as, or in its control_group")
        }
        // And a whole other process running as nobody.
        #expect(try askAsNobody(t.path, groups: nil) == "connect errno \(EACCES)")
        #expect(try t.requests().isEmpty)
    }

    @Test(.needsRoot) func theServerRefusesOutsidersEvenWhenTheModeLetsThemIn() throws {
        let t = try TestServer(group: usersGroup)
        defer { t.shutdown() }
        #expect(chmod(t.path, 0o666) == 0)
        let answer = try askAsNobody(t.path, groups: nil)
        #expect(
            answer
                == #"{"v":1,"ok":false,"error":"permission denied: uid 65534 is not root, not the supervisor's user (uid 0) and not in its group 100"}"#
        )
        #expect(try t.requests().isEmpty)
    }

    @Test(.needsRoot) func aGroupMemberIsReadOnly() throws {
        let t = try TestServer(group: usersGroup)
        defer { t.shutdown() }
        #expect(try askAsNobody(t.path, groups: [usersGroup]) == "echo:who")
        let seen = try t.requests()
        #expect(seen.count == 1)
        #expect(seen.first?.access == .readOnly)
        #expect(seen.first?.peer.uid == 65534)
        #expect(seen.first?.peer.gid == 65534)
        #expect(seen.first?.peer.groups == [usersGroup])
    }

    // MARK: - Client errors

    @Test func clientErrorsSayWhatToDo() throws {
        let dir = try TemporaryDirectory()
        let missing = dir.path + "/nothing.sock"
        #expect(clientError(missing) == "no poolvisor is listening at \(missing) (is it running? is this the right --socket?)")
        let stale = dir.path + "/stale.sock"
        try makeStaleSocket(at: stale)
        #expect(clientError(stale) == "no poolvisor is listening at \(stale) (is it running? is this the right --socket?)")
        // Listening but never answering (a hung supervisor): the deadline holds.
        let hung = dir.path + "/hung.sock"
        let fd = try listeningSocket(at: hung)
        defer { close(fd) }
        let start = ContinuousClock.now
        #expect(clientError(hung, timeout: .milliseconds(200)) == "no answer from \(hung) within 200ms")
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(clientError(hung, line: "two\nlines") == "a request must be a single line")
    }

    // MARK: - Resources

    @Test func closeLeavesNoDescriptorsAndNoFile() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        let a = try RawClient(t.path)
        let b = try RawClient(t.path)
        #expect(b.send(String(repeating: "big 1048576\n", count: 3)))
        try t.waitUntil { $0.connectionCount == 2 && $0.pendingOutputBytes > 0 }
        let descriptors = try t.sync { $0.descriptors }
        #expect(descriptors.count == 4)  // listener, timer, two connections
        let sockets = Set(descriptors.compactMap(socketIdentity))
        #expect(sockets.count == 3)
        t.shutdown()
        #expect(Set(openDescriptorIdentities()).isDisjoint(with: sockets))
        #expect(access(t.path, F_OK) != 0)
        #expect(a.waitForClose() && b.waitForClose())
    }

    /// Not a check but a measurement, printed: the median of 1000 tiny requests through ControlClient,
    /// a new connection each, served on the loop thread.
    @Test func roundTripTime() throws {
        let t = try TestServer()
        defer { t.shutdown() }
        var samples: [Duration] = []
        for _ in 0..<1000 {
            let start = ContinuousClock.now
            _ = try ControlClient.request(socket: t.path, line: Array("ping".utf8), timeout: .seconds(5))
            samples.append(ContinuousClock.now - start)
        }
        samples.sort()
        func microseconds(_ d: Duration) -> Int { Int(d.components.attoseconds / 1_000_000_000_000) + Int(d.components.seconds) * 1_000_000 }
        print("control round trip: median \(microseconds(samples[500])) µs, p99 \(microseconds(samples[990])) µs over 1000 requests")
        #expect(samples[500] < .milliseconds(100))
    }
}

// MARK: - Support

private let usersGroup: UInt32 = 100

extension Trait where Self == ConditionTrait {
    /// For tests that give the socket to another group or run peers as nobody.
    fileprivate static var needsRoot: Self { .enabled(if: geteuid() == 0, "needs root (chown, setpriv)") }
}

/// A ControlServer with an echoing handler on its own loop thread, in a fresh directory. Requests:
/// `big N` answers N bytes of "x"; anything else answers "echo:" + the request.
private final class TestServer {
    struct Seen {
        var request: String
        var access: ControlServer.Access
        var peer: ControlServer.Peer
    }

    let dir: TemporaryDirectory
    let path: String
    var directory: String { String(path[..<path.lastIndex(of: "/")!]) }
    private let thread: LoopThread
    private var server: ControlServer?
    private var stopped = false
    /// Touched only on the loop thread.
    private let seen = Box<[Seen]>([])

    /// The timeouts are generous unless a test is about them, so that a slow machine fails nothing;
    /// the connection limits are the server's defaults. With `speaksProtocol`, requests are parsed as
    /// the daemon parses them: a bad one is answered with its error, a good one with
    /// `{"v":1,"ok":true,"ran":COMMAND}` (and only these are seen).
    init(
        path: String? = nil, group: UInt32? = nil, maximumRequestBytes: Int = 64 * 1024,
        requestTimeout: Duration = .seconds(30), idleTimeout: Duration = .seconds(30), maximumConnections: Int = 64,
        maximumReadOnlyConnections: Int = 48, maximumConnectionsPerUser: Int = 8,
        maximumPendingOutputBytes: Int = 4 * 1024 * 1024, speaksProtocol: Bool = false
    ) throws {
        dir = try TemporaryDirectory()
        self.path = path ?? dir.path + "/run/control/control.sock"
        thread = try LoopThread()
        let seen = seen
        let socketPath = self.path
        let itself = Box<ControlServer?>(nil)
        server = try thread.sync { loop in
            try ControlServer(
                path: socketPath, group: group, loop: loop, maximumRequestBytes: maximumRequestBytes,
                requestTimeout: requestTimeout, idleTimeout: idleTimeout, maximumConnections: maximumConnections,
                maximumReadOnlyConnections: maximumReadOnlyConnections, maximumConnectionsPerUser: maximumConnectionsPerUser,
                maximumPendingOutputBytes: maximumPendingOutputBytes
            ) { request, access, peer in
                let text = String(decoding: request, as: UTF8.self)
                if speaksProtocol {
                    switch ControlProtocol.Request.parse(request) {
                    case .failure(let error):
                        return Array(ControlProtocol.error(error.message).serialized.utf8)
                    case .success(let parsed):
                        seen.value.append(Seen(request: text, access: access, peer: peer))
                        let ran: JSON = ["v": 1, "ok": true, "ran": parsed.json["command"] ?? .null]
                        return Array(ran.serialized.utf8)
                    }
                }
                if text == "follow" {
                    itself.value?.followCurrentRequest(pool: nil)
                    return Array("following".utf8)
                }
                if text.hasPrefix("big "), let n = Int(text.dropFirst(4)) {
                    return [UInt8](repeating: UInt8(ascii: "x"), count: n)
                }
                seen.value.append(Seen(request: text, access: access, peer: peer))
                return Array("echo:".utf8) + request
            }
        }
        itself.value = server
    }

    /// Runs `body` with the server on the loop thread.
    func sync<T>(_ body: @escaping (ControlServer) -> T) throws -> T {
        let server = server!
        return try thread.sync { _ in body(server) }
    }

    func requests() throws -> [Seen] {
        let seen = seen
        return try thread.sync { _ in seen.value }
    }

    func waitUntil(timeout: Duration = .seconds(5), _ condition: @escaping (ControlServer) -> Bool) throws {
        let ok = try poll(timeout: timeout) { try self.sync(condition) }
        if !ok { throw TestFailure("condition not met within \(timeout)") }
    }

    func shutdown() {
        guard !stopped else { return }
        stopped = true
        if let server {
            _ = try? thread.sync { _ in server.close() }
        }
        server = nil
        thread.stop()
    }
}

private final class Box<T> {
    var value: T
    init(_ value: T) { self.value = value }
}

private struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An EventLoop run by its own thread; `sync` runs a closure there and waits for its result.
private final class LoopThread: @unchecked Sendable {
    private let loop: EventLoop
    private let lock = NSLock()
    private var jobs: [(EventLoop) -> Void] = []
    /// A socket pair whose write end wakes the loop for `jobs`.
    private let wake: (read: Int32, write: Int32)
    private var running = true  // loop thread only
    private let finished = DispatchSemaphore(value: 0)

    init() throws {
        loop = try EventLoop()
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else {
            throw TestFailure("socketpair: errno \(errno)")
        }
        wake = (fds[0], fds[1])
        try loop.add(wake.read) { [unowned self] _ in self.runJobs() }
        Thread { self.run() }.start()
    }

    private func run() {
        while running { loop.runOnce() }
        finished.signal()
    }

    private func runJobs() {
        var drain = [UInt8](repeating: 0, count: 64)
        _ = read(wake.read, &drain, drain.count)
        let pending = lock.withLock {
            defer { jobs = [] }
            return jobs
        }
        for job in pending { job(loop) }
    }

    func sync<T>(_ body: @escaping (EventLoop) throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        var result: Result<T, any Error>?
        lock.withLock {
            jobs.append { loop in
                result = Result { try body(loop) }
                done.signal()
            }
        }
        var one: UInt8 = 1
        _ = write(wake.write, &one, 1)
        guard done.wait(timeout: .now() + 10) == .success, let result else { throw TestFailure("the loop thread did not answer in 10 s") }
        return try result.get()
    }

    func stop() {
        _ = try? sync { [self] _ in running = false }
        _ = finished.wait(timeout: .now() + 10)
        close(wake.read)
        close(wake.write)
    }
}

/// A client on a raw, blocking-free socket, for what ControlClient does not do: pipelining, silence,
/// half-closing, not reading.
private final class RawClient {
    let fd: Int32
    private var received: [UInt8] = []

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
            let e = errno
            close(fd)
            throw TestFailure("connect \(path): errno \(e)")
        }
    }

    deinit { close(fd) }

    /// Sends all of `text` or fails within the deadline (a server applying backpressure stops reading).
    func send(_ text: String, timeout: Duration = .seconds(5)) -> Bool {
        let bytes = Array(text.utf8)
        var offset = 0
        let deadline = ContinuousClock.now + timeout
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EAGAIN {
                guard wait(POLLOUT, until: deadline) else { return false }
            } else {
                return false
            }
        }
        return true
    }

    /// The next line, or nil at end of stream or after `timeout`.
    func readLine(timeout: Duration = .seconds(5)) -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let nl = received.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: received[..<nl], as: UTF8.self)
                received.removeSubrange(...nl)
                return line
            }
            guard wait(POLLIN, until: deadline), receive() > 0 else { return nil }
        }
    }

    /// True once the server has closed the connection (EOF or reset), discarding what it sent.
    func waitForClose(timeout: Duration = .seconds(5)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while wait(POLLIN, until: deadline) {
            if receive() <= 0 { return true }
        }
        return false
    }

    /// Not hung up: the server has not closed its end (unread data does not matter).
    var isOpen: Bool {
        var pfd = pollfd(fd: fd, events: 0, revents: 0)
        return poll(&pfd, 1, 0) == 0 || pfd.revents & Int16(POLLHUP | POLLERR) == 0
    }

    private func receive() -> Int {
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if n > 0 { received += buffer[0..<n] }
        if n < 0 && errno == EAGAIN { return 1 }
        return n
    }

    private func wait(_ event: Int32, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return false }
            var pfd = pollfd(fd: fd, events: Int16(event), revents: 0)
            let r = poll(&pfd, 1, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1))
            if r > 0 { return true }
            if r < 0 && errno != EINTR { return false }
        }
    }
}

/// `mkdtemp` under /tmp, mode 0755 so that `nobody` can reach sockets inside; removed on deinit.
private final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/poolvisor-control-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp: errno \(errno)")
        }
        path = String(cString: made)
        chmod(path, 0o755)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

private func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A socket file nobody listens on, as a supervisor that was killed leaves behind.
private func makeStaleSocket(at path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else { throw TestFailure("bind \(path): errno \(errno)") }
}

/// A socket that listens but never accepts.
private func listeningSocket(at path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, 8) == 0 else {
        close(fd)
        throw TestFailure("listen \(path): errno \(errno)")
    }
    return fd
}

private func clientError(_ path: String, line: String = "x", timeout: Duration = .seconds(2)) -> String? {
    do {
        _ = try ControlClient.request(socket: path, line: Array(line.utf8), timeout: timeout)
        return nil
    } catch {
        return error.description
    }
}

/// Polls `condition` until it holds or `timeout` passes (ProcessUsageReaderTests uses it too).
func poll(timeout: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.005)
    }
    return try condition()
}

/// "socket:[inode]" for an fd that is a socket.
private func socketIdentity(_ fd: Int32) -> String? {
    let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? ""
    return target.hasPrefix("socket:") ? target : nil
}

private func openDescriptorIdentities() -> [String] {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return fds.compactMap { Int32($0) }.compactMap(socketIdentity)
}

/// Runs python3 as uid/gid 65534 (with only `groups` as supplementary groups) to connect to `path`,
/// send "who" and read one line. Returns that line, or "connect errno N".
private func askAsNobody(_ path: String, groups: [UInt32]?) throws -> String {
    let dir = try TemporaryDirectory()
    let out = dir.path + "/answer"
    let fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC, 0o666)
    fchmod(fd, 0o666)
    close(fd)
    let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(sys.argv[1])
        except OSError as e:
            open(sys.argv[2], "w").write("connect errno %d" % e.errno)
            sys.exit(0)
        try:
            s.sendall(b"who\\n")
        except OSError:
            pass  # refused already; the reason is waiting to be read
        data = b""
        while not data.endswith(b"\\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        open(sys.argv[2], "w").write(data.decode(errors="replace").rstrip("\\n"))
        """
    let groupArguments = groups.map { ["--groups=" + $0.map(String.init).joined(separator: ",")] } ?? ["--clear-groups"]
    let status = try run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534"] + groupArguments + ["/usr/bin/python3", "-I", "-c", script, path, out])
    guard status == 0 else { throw TestFailure("setpriv python3 exited with status \(status)") }
    return try String(contentsOfFile: out, encoding: .utf8)
}

/// Connections made by a python3 run as `uid` (gid the same, in the socket's group, so read-only
/// peers), one after the other, then held: silent, or sending one byte (never a newline) on each every
/// `trickle`. What became of each is in `outcomes()`: "open", or the first line the server sent before
/// it closed the connection. `stop()` (also on deinit) closes them all and waits for the process.
private final class ReadOnlyPeers {
    private let dir: TemporaryDirectory
    private let out: String
    private let stopFile: String
    private var pid: pid_t = 0

    init(_ path: String, uid: UInt32, connections: Int, trickle: Duration = .zero) throws {
        dir = try TemporaryDirectory()
        chmod(dir.path, 0o777)  // for the process's reports
        out = dir.path + "/outcomes"
        stopFile = dir.path + "/stop"
        let script = """
            import os, select, socket, sys, time
            path, count, interval, out, stop = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
            socks, state, received = [], [], []
            for i in range(count):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    s.setblocking(False)
                    socks.append(s)
                    state.append("open")
                except OSError as e:
                    socks.append(None)
                    state.append("connect errno %d" % e.errno)
                received.append(b"")
            def report():
                with open(out + ".new", "w") as f:
                    f.write("".join(line + "\\n" for line in state))
                os.replace(out + ".new", out)
            report()
            end = time.monotonic() + 60
            next_byte = time.monotonic() + interval
            while not os.path.exists(stop) and time.monotonic() < end:
                live = [s for s in socks if s is not None]
                if interval > 0 and time.monotonic() >= next_byte:
                    next_byte += interval
                    for s in live:
                        try:
                            s.send(b"x")
                        except OSError:
                            pass  # closed by the server; its line is read below
                if not live:
                    time.sleep(0.02)
                    continue
                changed = False
                for s in select.select(live, [], [], 0.02)[0]:
                    i = socks.index(s)
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    received[i] += data
                    if not data:
                        state[i] = received[i].decode(errors="replace").split("\\n")[0] or "closed without a word"
                        s.close()
                        socks[i] = None
                        changed = True
                if changed:
                    report()
            """
        let seconds = String(Double(trickle.components.seconds) + Double(trickle.components.attoseconds) / 1e18)
        pid = try spawn(
            [
                "/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--groups=\(usersGroup)", "/usr/bin/python3", "-I", "-c", script,
                path, String(connections), seconds, out, stopFile,
            ]
        )
    }

    deinit { stop() }

    /// One entry per connection once all are made, else none.
    func outcomes() -> [String] {
        guard let text = try? String(contentsOfFile: out, encoding: .utf8) else { return [] }
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    func stop() {
        guard pid > 0 else { return }
        close(open(stopFile, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644))
        var status: Int32 = 0
        if !poll(timeout: .seconds(5), { waitpid(pid, &status, WNOHANG) == pid }) {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        pid = 0
    }
}

/// posix_spawn; the caller waits (ProcessUsageReaderTests uses it too).
func spawn(_ argv: [String]) throws -> pid_t {
    let args: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let env: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
    defer { (args + env).forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], nil, nil, args, env)
    guard rc == 0 else { throw TestFailure("posix_spawn \(argv[0]): errno \(rc)") }
    return pid
}

/// posix_spawn + waitpid. The child's own timeouts bound the wait.
private func run(_ argv: [String]) throws -> Int32 {
    let pid = try spawn(argv)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return status
}

/// Runs `body` on a new thread whose file-system uid and gid are nobody's (65534). setfsuid and
/// setfsgid change only the calling thread (glibc does not broadcast them to other threads like
/// setuid), and leaving uid 0 for the fs uid drops CAP_DAC_OVERRIDE, so the kernel checks the socket
/// file's mode as for nobody. They are GNU-only, hence dlsym.
private func asNobodyOnOwnThread<T>(_ body: @escaping () -> T) throws -> T {
    typealias SetFSID = @convention(c) (UInt32) -> Int32
    let libc = dlopen(nil, RTLD_NOW)
    guard let uidSymbol = dlsym(libc, "setfsuid"), let gidSymbol = dlsym(libc, "setfsgid") else {
        throw TestFailure("setfsuid/setfsgid not found")
    }
    let setfsuid = unsafeBitCast(uidSymbol, to: SetFSID.self)
    let setfsgid = unsafeBitCast(gidSymbol, to: SetFSID.self)
    let box = UncheckedBox<T?>(nil)
    let work = UncheckedBox<() -> T>(body)
    let done = DispatchSemaphore(value: 0)
    let identity = UncheckedBox<Int32>(-1)
    Thread {
        _ = setfsgid(65534)
        _ = setfsuid(65534)
        identity.value = setfsuid(UInt32.max)  // an invalid id changes nothing and returns the current one
        box.value = work.value()
        done.signal()  // the thread ends here, with its identity
    }.start()
    guard done.wait(timeout: .now() + 10) == .success, let result = box.value else { throw TestFailure("nobody thread did not finish") }
    guard identity.value == 65534 else { throw TestFailure("setfsuid did not take (fs uid \(identity.value))") }
    return result
}

private final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
