import Foundation
import Glibc
import PoolvisorConfig
import TestServers
import Testing

@testable import PoolvisorControl
@testable import PoolvisorDaemon
@testable import PoolvisorScalers
@testable import PoolvisorSystem

// The test servers themselves: start, query, stop, restart on the same port, and clean-up.

@Suite(.serialized) struct TestServersTests {
    @Test func postgresStartsQueriesStopsAndRestartsOnTheSamePort() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        #expect(server.url == "postgresql://poolvisor:\(server.password)@127.0.0.1:\(server.port)/poolvisor")
        #expect(try server.sql("SELECT 40 + 2") == "42")
        #expect(try server.sql("SELECT current_user || ' ' || current_database()") == "poolvisor poolvisor")
        try server.sql("CREATE TABLE kept (n int)")
        try server.sql("INSERT INTO kept VALUES (1), (2)")
        // TCP logins need the password (scram-sha-256); the role has one.
        #expect(
            try server.sql(
                "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'poolvisor'",
                asSuperuser: true) == "t")
        #expect(
            try server.sql(
                "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'scram-sha-256'",
                asSuperuser: true) == "2")

        let port = server.port
        server.stop()
        #expect(!server.isRunning)
        #expect(throws: TestServerError.self) { try server.sql("SELECT 1") }

        try server.restart()
        #expect(server.port == port)
        #expect(try server.sql("SELECT sum(n) FROM kept") == "3")
    }

    @Test func postgresDestroyRemovesTheDirectoryAndTheProcess() throws {
        let server = try PostgresServer.start()
        let directory = server.directory
        let pidFile = try String(contentsOfFile: server.dataDirectory + "/postmaster.pid", encoding: .utf8)
        let postmaster = try #require(pidFile.split(separator: "\n").first.flatMap { Int32($0) })
        #expect(kill(postmaster, 0) == 0)
        server.destroy()
        server.destroy()  // idempotent
        #expect(!FileManager.default.fileExists(atPath: directory))
        #expect(!server.isRunning)
        #expect(kill(postmaster, 0) == -1 && errno == ESRCH)
    }

    @Test func sqlErrorsCarryPsqlsMessage() throws {
        let server = try PostgresServer.start()
        defer { server.destroy() }
        let error = #expect(throws: TestServerError.self) { try server.sql("SELECT * FROM nope") }
        #expect(error?.description.contains("relation \"nope\" does not exist") == true)
    }

    @Test func redisStartsAnswersStopsAndRestartsOnTheSamePort() throws {
        let server = try RedisServer.start()
        defer { server.destroy() }
        #expect(server.url == "redis://127.0.0.1:\(server.port)")
        #expect(try server.cli("RPUSH", "jobs", "a", "b") == "2")
        #expect(try server.cli("LLEN", "jobs") == "2")
        #expect(FileManager.default.fileExists(atPath: server.socketPath))

        let port = server.port
        server.stop()
        #expect(!server.isRunning)
        #expect(throws: TestServerError.self) { try server.cli("PING") }

        try server.restart()
        #expect(server.port == port)
        #expect(try server.cli("PING") == "PONG")
        #expect(try server.cli("LLEN", "jobs") == "0")  // nothing is persisted
    }

    @Test func redisWithAPassword() throws {
        let server = try RedisServer.start(password: "redis-Secret-123")
        defer { server.destroy() }
        #expect(server.url == "redis://:redis-Secret-123@127.0.0.1:\(server.port)/0")
        #expect(server.unixURL == "unix://:redis-Secret-123@\(server.socketPath)")
        #expect(try server.cli("PING") == "PONG")
        #expect(try server.cli("CONFIG", "GET", "requirepass").hasSuffix("redis-Secret-123"))
        let directory = server.directory
        server.destroy()
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    @Test func freePortsAreFree() throws {
        let port = try freeLoopbackPort()
        #expect((1024...65535).contains(port))
    }
}
