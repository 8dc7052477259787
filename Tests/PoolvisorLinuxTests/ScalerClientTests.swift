import CHiredis
import Foundation
import Glibc
import PoolvisorConfig
import PoolvisorCore
import TestServers
import Testing

@testable import PoolvisorControl
@testable import PoolvisorDaemon
@testable import PoolvisorLinux
@testable import PoolvisorScalers
@testable import PoolvisorSystem

// The scaler clients against real servers (TestServers): libpq and hiredis loaded with dlopen, every
// call bounded by its timeout, reconnection with backoff, and no secret in any message. Waits are
// conditions polled with a deadline.

/// Calls `attempt` until it returns a value or `timeout` passes; the value, or nil.
private func eventually<T>(timeout: Duration = .seconds(30), _ attempt: () -> T?) -> T? {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while true {
        if let value = attempt() { return value }
        if clock.now >= deadline { return nil }
        usleep(20_000)
    }
}

/// `body`'s result and how long it took.
private func timed<T>(_ body: () -> T) -> (T, Duration) {
    let clock = ContinuousClock()
    let start = clock.now
    let result = body()
    return (result, clock.now - start)
}

private func failureMessage<T>(_ result: Result<T, ScalerError>) -> String? {
    if case .failure(let error) = result { return error.message }
    return nil
}

/// A TCP port on 127.0.0.1 that accepts connections (the kernel completes them into the backlog) but
/// whose server never reads or answers: a hung server.
private final class SilentListener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw TestServerError("cannot listen: \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

// MARK: - Loading

@Suite struct ScalerClientLinkingTests {
    /// libpq and hiredis come in through dlopen only: a binary that uses the clients (this test bundle
    /// links PoolvisorLinux as the daemon does) does not name them, so a supervisor without a
    /// PostgreSQL or Redis scaler never maps them (nor libssl and libcrypto).
    @Test func neitherLibraryIsLinked() throws {
        let ldd = Process()
        ldd.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
        ldd.arguments = [try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")]
        let output = Pipe()
        ldd.standardOutput = output
        try ldd.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ldd.waitUntilExit()
        #expect(text.contains("libc.so"))
        #expect(!text.contains("libpq"))
        #expect(!text.contains("libhiredis"))
        #expect(!text.contains("libssl"))
    }
}

// MARK: - PostgreSQL

@Suite(.serialized) struct PostgresScalerClientTests {
    @Test func countsRowsAndReusesOneConnection() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        try server.sql("CREATE TABLE jobs (id serial PRIMARY KEY, state text)")
        try server.sql("INSERT INTO jobs (state) SELECT 'queued' FROM generate_series(1, 7)")

        let client = PostgresClient(connectionString: server.url, timeout: .seconds(5))
        defer { client.close() }
        #expect(try client.queryNumber("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").get() == 7)
        let backend = try #require(client.backendPID)

        try server.sql("INSERT INTO jobs (state) VALUES ('queued'), ('queued'), ('done')")
        #expect(try client.queryNumber("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").get() == 9)
        #expect(try client.queryNumber("SELECT count(*) FILTER (WHERE state = 'done') FROM jobs").get() == 1)
        #expect(client.backendPID == backend)
        #expect(try server.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poolvisor'") == "1")
        #expect(try server.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'poolvisor'") == String(backend))

        client.close()
        #expect(client.backendPID == nil)
        #expect(try client.queryNumber("SELECT 1").get() == 1)
        #expect(client.backendPID != backend)
    }

    @Test func everyNumericTypeIsANumber() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let client = PostgresClient(connectionString: server.url, timeout: .seconds(5))
        let cases: [(String, Double)] = [
            ("SELECT 7::smallint", 7), ("SELECT 42", 42), ("SELECT 9000000000::bigint", 9_000_000_000),
            ("SELECT 2.5::numeric", 2.5), ("SELECT 1.25::real", 1.25), ("SELECT -0.125::double precision", -0.125),
            ("SELECT avg(x) FROM generate_series(1, 4) x", 2.5), ("  select 3 ; ", 3),
        ]
        for (sql, expected) in cases {
            #expect(try client.queryNumber(sql).get() == expected, "\(sql)")
        }
    }

    @Test func aQueryThatRunsTooLongIsCancelledWithinTheTimeoutAndTheConnectionIsKept() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let client = PostgresClient(connectionString: server.url, timeout: .milliseconds(500))
        #expect(try client.queryNumber("SELECT 1").get() == 1)
        let backend = client.backendPID

        let (result, took) = timed { client.queryNumber("SELECT pg_sleep(10)") }
        #expect(failureMessage(result) == "the query timed out after 500 ms")
        #expect(took < .seconds(2))

        // The cancel request reached the server: the sleep is gone.
        let gone = eventually(timeout: .seconds(10)) { () -> Bool? in
            let active = try? server.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(10)%'"
                    + " AND state = 'active' AND pid <> pg_backend_pid()")
            return active == "0" ? true : nil
        }
        #expect(gone == true)

        // The next query reads the cancelled one's remains first, then runs on the same connection.
        let (next, nextTook) = timed { client.queryNumber("SELECT 2") }
        #expect(try next.get() == 2)
        #expect(nextTook < .seconds(1))
        #expect(client.backendPID == backend)
    }

    @Test func theNextQueryWorksEvenWhenItFollowsTheTimeoutAtOnce() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let client = PostgresClient(connectionString: server.url, timeout: .milliseconds(500))
        let (result, took) = timed { client.queryNumber("SELECT pg_sleep(10)") }
        #expect(failureMessage(result) == "the query timed out after 500 ms")
        #expect(took < .seconds(2))
        let (next, nextTook) = timed { client.queryNumber("SELECT 3") }
        #expect(try next.get() == 3)
        #expect(nextTook < .seconds(1))
    }

    @Test func resultsThatAreNotOneNumberAreClearErrors() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        try server.sql("CREATE TABLE t (n int)")
        let client = PostgresClient(connectionString: server.url, timeout: .seconds(5))
        #expect(try client.queryNumber("SELECT 1").get() == 1)
        let backend = client.backendPID
        let cases: [(String, String)] = [
            ("SELECT NULL::int", "the query returned NULL; use COALESCE(…, 0)"),
            ("SELECT max(n) FROM t", "the query returned NULL; use COALESCE(…, 0)"),
            ("SELECT 1, 2", "the query returned 2 columns; it must return one number"),
            ("SELECT 1, 2, 3", "the query returned 3 columns; it must return one number"),
            ("SELECT 'seven'", "the query returned a value of type text; it must return a number (integer, numeric or float)"),
            ("SELECT now()", "the query returned a value of type timestamp with time zone; it must return a number (integer, numeric or float)"),
            ("SELECT true", "the query returned a value of type boolean; it must return a number (integer, numeric or float)"),
            ("SELECT n FROM t", "the query returned 0 rows; it must return one number"),
            ("SELECT * FROM generate_series(1, 3)", "the query returned 3 rows; it must return one number"),
            ("SELECT 'NaN'::numeric", "the query returned NaN; it must return a finite number"),
            ("UPDATE t SET n = 1", "the statement returned no rows; it must be a query that returns one number"),
            ("", "the query is empty; it must return one number"),
            ("SELECT 1; SELECT 2", "the query returned 2 results; it must be one statement that returns one number"),
            ("SELECT * FROM nope", "the query failed: relation \"nope\" does not exist (SQLSTATE 42P01)"),
            ("SELEC 1", "the query failed: syntax error at or near \"SELEC\" (SQLSTATE 42601)"),
            ("SELECT 1/0", "the query failed: division by zero (SQLSTATE 22012)"),
        ]
        for (sql, message) in cases {
            #expect(failureMessage(client.queryNumber(sql)) == message, "\(sql)")
        }
        // None of that is a connection problem: still the same connection.
        #expect(client.backendPID == backend)
        #expect(try client.queryNumber("SELECT 5").get() == 5)
    }

    @Test func aQueryLeavingATransactionOpenDoesNotKeepIt() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let client = PostgresClient(connectionString: server.url, timeout: .seconds(5))
        #expect(failureMessage(client.queryNumber("BEGIN; SELECT 1")) != nil)
        #expect(client.backendPID == nil)  // dropped rather than left "idle in transaction"
        #expect(try client.queryNumber("SELECT 1").get() == 1)
    }

    @Test func aWrongPasswordFailsWithoutShowingItAndThenBacksOff() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let wrongPassword = "Wr0ngPassw0rd-\(server.port)"
        let url = "postgresql://poolvisor:\(wrongPassword)@127.0.0.1:\(server.port)/poolvisor"
        let client = PostgresClient(connectionString: url, timeout: .seconds(5))
        let message = try #require(failureMessage(client.queryNumber("SELECT 1")))
        #expect(message.hasPrefix("cannot connect to PostgreSQL: "))
        #expect(message.contains("password authentication failed for user \"poolvisor\""))
        let again = try #require(failureMessage(client.queryNumber("SELECT 1")))
        #expect(again.hasPrefix("reconnecting in "))
        #expect(again.contains("password authentication failed"))
        for text in [message, again] {
            #expect(!text.contains(wrongPassword))
            #expect(!text.contains(url))
            #expect(!text.contains(server.password))
        }

        // Keyword/value form, the password quoted.
        let keywords = PostgresClient(
            connectionString: "host=127.0.0.1 port=\(server.port) dbname=poolvisor user=poolvisor password='\(wrongPassword)'",
            timeout: .seconds(5))
        let keywordMessage = try #require(failureMessage(keywords.queryNumber("SELECT 1")))
        #expect(keywordMessage.contains("password authentication failed"))
        #expect(!keywordMessage.contains(wrongPassword))
    }

    @Test func invalidConnectionStringsNeverShowTheSecrets() throws {
        let cases: [(String, String)] = [
            ("host=localhost Sup3rSecret-pw", "the PostgreSQL connection string is not valid: missing \"=\" after \"***\" in connection info string"),
            ("postgresql://user:Sup3r%zzSecret@localhost/db", "the PostgreSQL connection string is not valid: invalid percent-encoded token: \"***\""),
            (
                "postgresql://user:Sup3rSecret@[::1/db",
                "the PostgreSQL connection string is not valid: end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"***\""
            ),
            ("password=Sup3rSecret hots=x", "the PostgreSQL connection string is not valid: invalid connection option \"hots\""),
            ("password='Sup3rSecret", "the PostgreSQL connection string is not valid: unterminated quoted string in connection info string"),
        ]
        for (conninfo, expected) in cases {
            let client = PostgresClient(connectionString: conninfo, timeout: .seconds(2))
            let message = failureMessage(client.queryNumber("SELECT 1"))
            #expect(message == expected)
            #expect(message?.contains("Sup3r") == false)
        }
        // Valid syntax, invalid value: libpq's message at connect time, redacted.
        let badPort = PostgresClient(connectionString: "postgresql://user:Sup3rSecret@127.0.0.1:notaport/db", timeout: .seconds(2))
        let message = try #require(failureMessage(badPort.queryNumber("SELECT 1")))
        #expect(message.hasPrefix("cannot connect to PostgreSQL: "))
        #expect(message.contains("notaport"))
        #expect(!message.contains("Sup3rSecret"))
    }

    @Test func aServerThatNeverAnswersTimesOutTheConnection() throws {
        let listener = try SilentListener()
        let client = PostgresClient(
            connectionString: "postgresql://poolvisor:SilentPassw0rd@127.0.0.1:\(listener.port)/poolvisor",
            timeout: .milliseconds(500))
        let (result, took) = timed { client.queryNumber("SELECT 1") }
        #expect(failureMessage(result) == "connecting to PostgreSQL timed out after 500 ms")
        #expect(took >= .milliseconds(450))
        #expect(took < .seconds(2))
        // Backoff: the next call does not wait again.
        let (again, againTook) = timed { client.queryNumber("SELECT 1") }
        #expect(failureMessage(again)?.hasPrefix("reconnecting in ") == true)
        #expect(againTook < .milliseconds(100))
    }

    @Test func aStoppedServerIsAnErrorWithinTheTimeoutAndARestartedOneIsFoundAgain() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let client = PostgresClient(connectionString: server.url, timeout: .seconds(2))
        #expect(try client.queryNumber("SELECT 1").get() == 1)

        server.stop()
        var messages: [String] = []
        let (result, took) = timed { client.queryNumber("SELECT 1") }
        let stopped = try #require(failureMessage(result))
        messages.append(stopped)
        #expect(stopped.hasPrefix("cannot connect to PostgreSQL: "))
        #expect(stopped.contains("Connection refused"))
        #expect(took < .seconds(2))
        let backingOff = try #require(failureMessage(client.queryNumber("SELECT 1")))
        messages.append(backingOff)
        #expect(backingOff.hasPrefix("reconnecting in "))

        try server.restart()
        let recovered = eventually(timeout: .seconds(40)) { () -> Double? in
            switch client.queryNumber("SELECT 11") {
            case .success(let value): return value
            case .failure(let error):
                messages.append(error.message)
                return nil
            }
        }
        #expect(recovered == 11)
        for message in messages {
            #expect(!message.contains(server.password))
            #expect(!message.contains(server.url))
        }
    }

    @Test func aConnectionTerminatedWhileIdleIsReplacedWithinTheSameCall() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let client = PostgresClient(connectionString: server.url, timeout: .seconds(5))
        #expect(try client.queryNumber("SELECT 1").get() == 1)
        let backend = try #require(client.backendPID)
        #expect(try server.sql("SELECT pg_terminate_backend(\(backend))", asSuperuser: true) == "t")
        let gone = eventually(timeout: .seconds(10)) { () -> Bool? in
            (try? server.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = \(backend)")) == "0" ? true : nil
        }
        #expect(gone == true)
        #expect(try client.queryNumber("SELECT 2").get() == 2)
        #expect(client.backendPID != backend)
    }

    @Test func aMissingLibraryIsAClearError() {
        let result = LibPQ.load(["libpq.so.99"])
        #expect(
            failureMessage(result) == "cannot load libpq (libpq.so.99): libpq.so.99: cannot open shared object file: "
                + "No such file or directory — install the libpq5 package")
    }

    @Test func rawPasswordsAreFoundInEveryForm() {
        #expect(PostgresClient.rawPasswords(in: "postgresql://u:p%40ss@h/db") == ["p%40ss"])
        #expect(PostgresClient.rawPasswords(in: "postgres://h/db?user=u&password=s3cr%65t") == ["s3cr%65t"])
        #expect(PostgresClient.rawPasswords(in: "host=h password = 'it\\'s secret' user=u") == ["it's secret", "it\\"])
        #expect(PostgresClient.rawPasswords(in: "host=h password=plain user=u") == ["plain"])
        #expect(PostgresClient.rawPasswords(in: "host=h user=u").isEmpty)
    }
}

// MARK: - Redis

@Suite(.serialized) struct RedisScalerClientTests {
    func client(_ url: String, timeout: Duration = .seconds(5)) throws -> RedisClient {
        RedisClient(endpoint: try RedisEndpoint.parse(url).get(), timeout: timeout)
    }

    @Test func pipelinedCommandsReturnOneValueEach() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        try server.cli("RPUSH", "jobs", "a", "b", "c")
        try server.cli("ZADD", "delayed", "1", "x", "2", "y", "3", "z")
        try server.cli("XADD", "events", "*", "f", "v")
        try server.cli("XGROUP", "CREATE", "events", "workers", "0")
        try server.cli("XREADGROUP", "GROUP", "workers", "w1", "COUNT", "1", "STREAMS", "events", ">")

        let redis = try client(server.url)
        let values = try redis.run([
            ["LLEN", "jobs"], ["ZCOUNT", "delayed", "-inf", "2"], ["XINFO", "GROUPS", "events"],
            ["GET", "missing"], ["SET", "k", "v"], ["LRANGE", "jobs", "0", "-1"],
        ]).get()
        #expect(values.count == 6)
        #expect(values[0] == .integer(3))
        #expect(values[1] == .integer(2))
        guard case .array(let groups) = values[2], case .array(let group)? = groups.first else {
            Issue.record("XINFO GROUPS: \(values[2])")
            return
        }
        #expect(groups.count == 1)
        #expect(
            Array(group.prefix(6)) == [
                .string("name"), .string("workers"), .string("consumers"), .integer(1),
                .string("pending"), .integer(1),
            ])
        #expect(values[3] == .null)
        #expect(values[4] == .status("OK"))
        #expect(values[5] == .array([.string("a"), .string("b"), .string("c")]))
        #expect(try redis.run([]).get() == [])
        #expect(try redis.run([["PING"]]).get() == [.status("PONG")])
    }

    @Test func errorRepliesAreValuesNotFailures() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        try server.cli("ZADD", "delayed", "1", "x")
        try server.cli("RPUSH", "jobs", "a")
        let redis = try client(server.url)
        let values = try redis.run([["LLEN", "delayed"], ["LLEN", "jobs"], ["NOSUCHCOMMAND"]]).get()
        guard case .error(let wrongType) = values[0], case .error(let unknown) = values[2] else {
            Issue.record("expected error replies: \(values)")
            return
        }
        #expect(wrongType.hasPrefix("WRONGTYPE "))
        #expect(values[1] == .integer(1))
        #expect(unknown.hasPrefix("ERR unknown command"))
        #expect(redis.isConnected)
    }

    @Test func argumentsAreBinarySafe() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        let redis = try client(server.url)
        let value = "a\u{0}b ü \r\n*1"
        let values = try redis.run([["SET", "bin", value], ["GET", "bin"], ["STRLEN", "bin"]]).get()
        #expect(values == [.status("OK"), .string(value), .integer(Int64(value.utf8.count))])
    }

    @Test func passwordsUsersAndDatabases() throws {
        let password = "redis-Pass-\(UInt32.random(in: 0...UInt32.max))"
        let server = try RedisServer.start(password: password)
        defer { server.destroy() }

        #expect(try client(server.url).run([["PING"]]).get() == [.status("PONG")])
        // ACL form: the default user.
        let withUser = "redis://default:\(password)@127.0.0.1:\(server.port)/3"
        let selected = try client(withUser)
        #expect(try selected.run([["SET", "where", "three"]]).get() == [.status("OK")])
        #expect(try server.cli("-n", "3", "GET", "where") == "three")
        #expect(try server.cli("GET", "where") == "")

        let wrongPassword = "Wr0ng-\(password)"
        let wrongURL = "redis://:\(wrongPassword)@127.0.0.1:\(server.port)"
        let wrong = try client(wrongURL)
        let message = try #require(failureMessage(wrong.run([["PING"]])))
        #expect(message.hasPrefix("cannot connect to Redis at redis://127.0.0.1:\(server.port): authentication failed: "))
        #expect(message.contains("WRONGPASS"))
        let again = try #require(failureMessage(wrong.run([["PING"]])))
        #expect(again.hasPrefix("reconnecting in "))
        for text in [message, again] {
            #expect(!text.contains(wrongPassword))
            #expect(!text.contains(password))
            #expect(!text.contains(wrongURL))
        }

        // Without a password every command gets NOAUTH, as a value.
        let anonymous = try client("redis://127.0.0.1:\(server.port)")
        let noauth = try anonymous.run([["LLEN", "jobs"]]).get()
        guard case .error(let reply)? = noauth.first else {
            Issue.record("expected NOAUTH: \(noauth)")
            return
        }
        #expect(reply.hasPrefix("NOAUTH"))
    }

    @Test func aPasswordForAServerWithoutOneFailsClearly() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        let redis = try client("redis://:NotNeeded-Passw0rd@127.0.0.1:\(server.port)")
        let message = try #require(failureMessage(redis.run([["PING"]])))
        #expect(message.contains("authentication failed: ERR AUTH <password> called without any password configured"))
        #expect(!message.contains("NotNeeded-Passw0rd"))
    }

    @Test func unixSockets() throws {
        let server = try RedisServer.start(password: "unix-Pass-1234")
        defer { server.destroy() }
        let redis = try client(server.unixURL)
        #expect(redis.endpoint.address == .unix(path: server.socketPath))
        #expect(try redis.run([["PING"], ["SET", "via", "socket"]]).get() == [.status("PONG"), .status("OK")])
        #expect(try server.cli("GET", "via") == "socket")

        let missing = try client("unix:///tmp/poolvisor-no-such-dir/redis.sock")
        let message = try #require(failureMessage(missing.run([["PING"]])))
        #expect(message == "cannot connect to Redis at unix:///tmp/poolvisor-no-such-dir/redis.sock: No such file or directory")
    }

    @Test func aBlockedCommandTimesOutAndTheNextCallReconnects() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        try server.cli("RPUSH", "jobs", "a")
        let redis = try client(server.url, timeout: .milliseconds(300))
        let (result, took) = timed { redis.run([["BLPOP", "nothing-here", "5"]]) }
        #expect(failureMessage(result) == "the Redis command timed out after 300 ms")
        #expect(took >= .milliseconds(250))
        #expect(took < .milliseconds(1500))
        #expect(!redis.isConnected)
        #expect(try redis.run([["LLEN", "jobs"]]).get() == [.integer(1)])
    }

    @Test func aServerBusyWithDebugSleepTimesOutFastAndIsFoundAgain() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        let redis = try client(server.url, timeout: .milliseconds(300))
        #expect(try redis.run([["PING"]]).get() == [.status("PONG")])
        let (result, took) = timed { redis.run([["DEBUG", "SLEEP", "2"]]) }
        #expect(failureMessage(result) == "the Redis command timed out after 300 ms")
        #expect(took < .milliseconds(1500))
        // While the server sleeps, calls fail within their timeout; afterwards they work again.
        var slowest: Duration = .zero
        let recovered = eventually(timeout: .seconds(20)) { () -> [RedisValue]? in
            let (result, took) = timed { redis.run([["PING"]]) }
            slowest = max(slowest, took)
            return try? result.get()
        }
        #expect(recovered == [.status("PONG")])
        #expect(slowest < .milliseconds(1500))
    }

    @Test func aServerThatNeverAnswersTimesOut() throws {
        let listener = try SilentListener()
        let redis = try client("redis://:Silent-Passw0rd@127.0.0.1:\(listener.port)", timeout: .milliseconds(300))
        let (result, took) = timed { redis.run([["PING"]]) }
        #expect(failureMessage(result) == "cannot connect to Redis at redis://127.0.0.1:\(listener.port): no answer to AUTH within 300 ms")
        #expect(took < .milliseconds(1500))
        #expect(failureMessage(redis.run([["PING"]]))?.hasPrefix("reconnecting in ") == true)
    }

    @Test func aStoppedServerIsAnErrorAndARestartedOneIsFoundAgain() throws {
        let password = "restart-Pass-\(UInt32.random(in: 0...UInt32.max))"
        let server = try RedisServer.start(password: password)
        defer { server.destroy() }
        let redis = try client(server.url, timeout: .seconds(2))
        #expect(try redis.run([["PING"]]).get() == [.status("PONG")])

        server.stop()
        var messages: [String] = []
        let (result, took) = timed { redis.run([["PING"]]) }
        let stopped = try #require(failureMessage(result))
        messages.append(stopped)
        #expect(stopped == "cannot connect to Redis at redis://127.0.0.1:\(server.port)/0: Connection refused")
        #expect(took < .seconds(2))
        let backingOff = try #require(failureMessage(redis.run([["PING"]])))
        messages.append(backingOff)
        #expect(backingOff.hasPrefix("reconnecting in "))

        try server.restart()
        let recovered = eventually(timeout: .seconds(40)) { () -> [RedisValue]? in
            switch redis.run([["PING"]]) {
            case .success(let values): return values
            case .failure(let error):
                messages.append(error.message)
                return nil
            }
        }
        #expect(recovered == [.status("PONG")])
        for message in messages {
            #expect(!message.contains(password))
            #expect(!message.contains(server.url))
        }
    }

    @Test func aMissingLibraryIsAClearError() {
        let result = Hiredis.load(["libhiredis.so.99", "libhiredis-nope.so"])
        #expect(
            failureMessage(result) == "cannot load hiredis (libhiredis.so.99, libhiredis-nope.so): libhiredis.so.99: "
                + "cannot open shared object file: No such file or directory — install the libhiredis0.14 (or libhiredis1.1.0) package")
    }

    @Test func theStructLayoutsMatchTheHeader() throws {
        // The header this build saw is one of the two layouts the client knows.
        let header = Hiredis.headerLayout
        #expect(header == (MemoryLayout<redisReply>.size == 48 ? Hiredis.Layout.v0 : Hiredis.Layout.v1))
        let loaded = try Hiredis.shared.get().get()
        if loaded.soname == "libhiredis.so.0.14" { #expect(loaded.layout == .v0) }
    }
}

/// `[supervisor.redis_events]`' handover in an in-place upgrade: what the old image had queued goes out
/// first from the new one, and the dropped count goes on.
@Suite struct RedisEventsHandoverTests {
    @Test func adoptedEventsGoOutBeforeNewOnesAndTheDroppedCountGoesOn() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        let spec = RedisEventsSpec(endpoint: Secret(server.url), variable: "REDIS_URL")
        let events = try RedisEvents(spec) { _ in }
        defer { events.stop() }
        // Only XADDs are taken: a handover is read from a file, and no other command belongs there.
        events.adopt(.init(queued: [["XADD", spec.stream, "*", "n", "1"], ["FLUSHALL"], ["XADD", spec.stream, "*", "n", "2"]], dropped: 7))
        events.publish([("n", "3")])
        #expect(events.dropped == 7)
        let order = eventually(timeout: .seconds(10)) { () -> [String]? in
            let out = (try? server.cli("XRANGE", spec.stream, "-", "+")) ?? ""
            // Each entry comes as its id, then field and value lines.
            let lines = out.split(separator: "\n").map(String.init)
            let values = lines.indices.dropLast().filter { lines[$0] == "n" }.map { lines[$0 + 1] }
            return values.count == 3 ? values : nil
        }
        #expect(order == ["1", "2", "3"])
        let handed = events.handover()
        #expect(handed.dropped == 7)
    }
}
