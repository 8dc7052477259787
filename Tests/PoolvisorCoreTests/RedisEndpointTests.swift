import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// Redis URLs, redaction of secrets from client messages, and the clients' reconnect backoff.
@Suite struct RedisEndpointTests {
    func parsed(_ url: String) throws -> RedisEndpoint {
        try RedisEndpoint.parse(url).get()
    }

    func failure(_ url: String) -> String? {
        if case .failure(let error) = RedisEndpoint.parse(url) { return error.message }
        return nil
    }

    @Test func hostOnlyUsesTheDefaultPortAndNoDatabase() throws {
        let e = try parsed("redis://cache.internal")
        #expect(e == RedisEndpoint(address: .tcp(host: "cache.internal", port: 6379)))
        #expect(e.description == "redis://cache.internal:6379")
        #expect(try parsed("redis://cache.internal/") == e)
    }

    @Test func everyPartOfATCPURL() throws {
        let e = try parsed("redis://worker:s3cret@127.0.0.1:6380/4")
        #expect(e.address == .tcp(host: "127.0.0.1", port: 6380))
        #expect(e.username == "worker")
        #expect(e.password == "s3cret")
        #expect(e.database == 4)
        #expect(e.description == "redis://127.0.0.1:6380/4")
    }

    @Test func passwordWithoutUserAndUserInfoWithoutColon() throws {
        let e = try parsed("redis://:pw-only@localhost:7000")
        #expect(e.username == nil)
        #expect(e.password == "pw-only")
        #expect(e.address == .tcp(host: "localhost", port: 7000))
        // As redis-cli reads it: user info without a colon is the password.
        #expect(try parsed("redis://justapassword@localhost").password == "justapassword")
    }

    @Test func userAndPasswordArePercentDecoded() throws {
        let e = try parsed("redis://us%65r:p%40ss%3Aw%2Fo%25rd+x@h:1/0")
        #expect(e.username == "user")
        #expect(e.password == "p@ss:w/o%rd+x")
        #expect(e.database == 0)
    }

    @Test func anUnencodedAtOrSlashInThePasswordStillParses() throws {
        let e = try parsed("redis://:p@ss/word@db.example:6390/2")
        #expect(e.password == "p@ss/word")
        #expect(e.address == .tcp(host: "db.example", port: 6390))
        #expect(e.database == 2)
    }

    @Test func ipv6Hosts() throws {
        #expect(try parsed("redis://[::1]:6400/1").address == .tcp(host: "::1", port: 6400))
        #expect(try parsed("redis://[fe80::1]").address == .tcp(host: "fe80::1", port: 6379))
        #expect(try parsed("redis://[::1]:6400").description == "redis://[::1]:6400")
    }

    @Test func unixSockets() throws {
        let e = try parsed("unix:///run/redis/redis.sock?db=3")
        #expect(e.address == .unix(path: "/run/redis/redis.sock"))
        #expect(e.database == 3)
        #expect(e.description == "unix:///run/redis/redis.sock?db=3")
        let withAuth = try parsed("redis+unix://app:pw%21@/tmp/my%20redis.sock")
        #expect(withAuth.address == .unix(path: "/tmp/my redis.sock"))
        #expect(withAuth.username == "app")
        #expect(withAuth.password == "pw!")
        let queryAuth = try parsed("unix:///tmp/r.sock?db=1&password=hunter22&username=bob")
        #expect(queryAuth.password == "hunter22")
        #expect(queryAuth.username == "bob")
        #expect(queryAuth.database == 1)
    }

    @Test func schemeIsCaseInsensitiveAndTLSIsRefused() throws {
        #expect(try parsed("REDIS://h").address == .tcp(host: "h", port: 6379))
        let tls = try #require(failure("rediss://:pw@h:6380"))
        #expect(tls.hasPrefix("TLS (rediss://) is not supported; "))
    }

    @Test(arguments: [
        ("http://h", "the Redis URL must start with redis:// or unix://"),
        ("h:6379", "the Redis URL must start with redis:// or unix://"),
        ("redis://h:abc", "the port in the Redis URL is not a number"),
        ("redis://h:", "the port in the Redis URL is not a number"),
        ("redis://h:-1", "the port in the Redis URL is not a number"),
        ("redis://h:70000", "the port in the Redis URL is out of range (1-65535)"),
        ("redis://h/zero", "the database in the Redis URL is not a number"),
        ("redis://h/1?db=2", "the database is given twice in the Redis URL"),
        ("redis://", "the Redis URL has no host"),
        ("redis://:pw@:6379", "the Redis URL has no host"),
        ("redis://[::1", "the IPv6 address in the Redis URL has no closing ]"),
        ("redis://bad host", "the host in the Redis URL is not a valid host name or address"),
        ("redis://:p%zz@h", "the password in the Redis URL is not correctly percent-encoded"),
        ("redis://:p%ff@h", "the password in the Redis URL is not valid UTF-8 once percent-decoded"),
        ("redis://bob:@h", "the Redis URL names a user but no password (expected user:password@)"),
        ("redis://h?timeout=3", "the Redis URL has an unknown query parameter (known: db, password, username)"),
        ("redis://h?db", "a query parameter in the Redis URL has no value (expected db=N)"),
        ("unix://relative/redis.sock", "the socket path in the Redis URL must be absolute (unix:///path/to/redis.sock)"),
    ])
    func errorsSayWhichPartIsWrong(url: String, message: String) {
        #expect(failure(url) == message)
    }

    @Test func parseErrorsNeverContainTheURLOrThePassword() {
        let urls = [
            "redis://:Sup3rSecretPW@host:port", "redis://:Sup3rSecretPW@host/db", "rediss://:Sup3rSecretPW@h",
            "redis://Sup3rSecretPW:x", "http://:Sup3rSecretPW@h", "redis://u:Sup3rSecretPW%zz@h",
            "redis://:Sup3rSecretPW@h?Sup3rSecretPW", "redis://u:Sup3rSecretPW@[::1",
        ]
        for url in urls {
            let message = failure(url)
            #expect(message != nil, "\(url) should not parse")
            #expect(message?.contains("Sup3rSecretPW") == false)
            #expect(message?.contains(url) == false)
        }
    }

    @Test func secretsHoldThePasswordAsDecodedAndAsWrittenAndTheURL() throws {
        let url = "redis://app:p%40ssword1@h:6379/0"
        let e = try parsed(url)
        #expect(Set(e.secrets) == [url, "p%40ssword1", "p@ssword1"])
        #expect(RedisEndpoint(address: .tcp(host: "h", port: 1), password: "pw12").secrets == ["pw12"])
        #expect(try parsed("redis://h").secrets == ["redis://h"])
        // Equality compares what the endpoint means, not where it came from.
        #expect(e == RedisEndpoint(address: .tcp(host: "h", port: 6379), username: "app", password: "p@ssword1", database: 0))
    }
}

extension RedisEndpointTests {
    @Suite struct Redaction {
        @Test func everyOccurrenceOfEverySecretIsMasked() {
            let message = "could not connect with password hunter22 (hunter22) to postgresql://u:hunter22@db/x"
            #expect(
                redacting(message, secrets: ["postgresql://u:hunter22@db/x", "hunter22"])
                    == "could not connect with password *** (***) to ***")
        }

        @Test func theLongestSecretGoesFirst() {
            // Replacing the password first would leave "postgresql://u:***@db" behind, not a mask.
            #expect(
                redacting("bad url postgresql://u:hunter22@db", secrets: ["hunter22", "postgresql://u:hunter22@db"])
                    == "bad url ***")
        }

        @Test func shortAndEmptySecretsAreSkipped() {
            #expect(redacting("ERR a problem at 12", secrets: ["", "a", "12", "ERR"]) == "ERR a problem at 12")
            #expect(redacting("abcd", secrets: ["abcd"]) == "***")
        }

        @Test func matchesOnBytesWhateverSurroundsTheSecret() {
            #expect(redacting("«pässwörd»é", secrets: ["pässwörd"]) == "«***»é")
            #expect(redacting("xxsecretsecretxx", secrets: ["secret"]) == "xx******xx")
            #expect(redacting("no secret here", secrets: ["hunter22"]) == "no secret here")
            #expect(redacting("", secrets: ["hunter22"]) == "")
        }
    }

    @Suite struct Backoff {
        func at(_ s: Double) -> Instant { Instant(nanoseconds: UInt64((1000 + s) * 1e9)) }

        @Test func callsBeforeTheRetryTimeFailAtOnceWithTheLastError() {
            var b = ReconnectBackoff()
            #expect(b.waiting(at: at(0)) == nil)
            b.connectFailed("Connection refused", at: at(0))
            #expect(b.waiting(at: at(0.1))?.message == "reconnecting in 400 ms: Connection refused")
            #expect(b.waiting(at: at(0.5)) == nil)
            b.connectFailed("Connection refused", at: at(0.5))
            #expect(b.waiting(at: at(0.5))?.message == "reconnecting in 1 s: Connection refused")
            b.connectFailed("timed out", at: at(2))
            #expect(b.waiting(at: at(2))?.message == "reconnecting in 2 s: timed out")
        }

        @Test func delaysDoubleUpTo30SecondsAndResetAfterASuccess() {
            var b = ReconnectBackoff()
            var delays: [Double] = []
            for _ in 0..<9 {
                b.connectFailed("down", at: at(0))
                delays.append(b.retryAt!.since(at(0)).seconds)
            }
            #expect(delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30])
            b.connected()
            #expect(b.waiting(at: at(0)) == nil)
            b.connectFailed("down", at: at(0))
            #expect(b.retryAt == at(0.5))
        }
    }
}
