import Foundation
import Glibc
import Testing

/// Pools files that once crashed, hung or grew the supervisor: each is refused at reload with a
/// diagnostic, while every worker of every pool keeps running.
@Suite struct HostilePoolsFileTests {
    static let pools = """
        [pools.chat]
        command = ["/bin/sleep", "1000"]
        replicas = 2
        ready_after_seconds = 0.2
        [pools.kb]
        command = ["/bin/sleep", "1001"]
        ready_after_seconds = 0.2
        """

    /// A hostile pools file (`@DIR@` is the scenario's directory) and what the refusal must say.
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var text: String
        var says: String
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "cpu_limit inf", text: pools + "\n[pools.kb.resources]\ncpu_limit = inf\n",
            says: "pools.toml:9:1: error: 'pools.kb.resources.cpu_limit' must be a number of cores such as 2, 0.5 or \"500m\", from 0.001 (\"1m\") to 4096, not inf"),
        Case(name: "cpu_limit 1e308", text: pools + "\n[pools.kb.resources]\ncpu_limit = 1e308\n", says: "to 4096, not 1e+308"),
        Case(name: "cpu_limit 1e15", text: pools + "\n[pools.kb.resources]\ncpu_limit = 1e15\n", says: "to 4096, not 1000000000000000.0"),
        Case(name: "cpu_request 1e400m", text: pools + "\n[pools.kb.resources]\ncpu_request = \"1e400m\"\n", says: "to 4096, not '1e400m'"),
        Case(
            name: "a new pool with cpu_limit inf", text: pools + "\n[pools.a]\ncommand = [\"/bin/sleep\", \"1\"]\n[pools.a.resources]\ncpu_limit = inf\n",
            says: "'pools.a.resources.cpu_limit' must be a number of cores"),
        Case(
            name: "a dotted key 50,000 deep", text: pools + "\n[env]\na" + String(repeating: ".a", count: 50_000) + " = 1\n",
            says: "pools.toml:9:1: error: the pools file nests deeper than 32 levels here"),
        Case(
            name: "a table header 50,000 deep", text: pools + "\n[pools.a" + String(repeating: ".x", count: 50_000) + "]\n",
            says: "pools.toml:8:1: error: the pools file nests deeper than 32 levels here"),
        Case(
            name: "arrays 50,000 deep", text: pools + "\nx = " + String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000) + "\n",
            says: "the pools file nests deeper than 32 levels here"),
        Case(
            name: "env_file /dev/zero", text: pools + "\nenv_file = \"/dev/zero\"\n",
            says: "'pools.kb.env_file': cannot read env file '/dev/zero': not a regular file (a character device)"),
        Case(name: "env_file a FIFO", text: pools + "\nenv_file = \"@DIR@/fifo\"\n", says: "/fifo': not a regular file (a FIFO)"),
        Case(name: "an env file over 1 MiB", text: pools + "\nenv_file = \"@DIR@/huge.env\"\n", says: "/huge.env': larger than 1 MiB, the limit for an env file"),
        Case(
            name: "a pools file over 1 MiB", text: pools + "\n# " + String(repeating: "x", count: 1 << 20) + "\n",
            says: "error: cannot read the pools file: larger than 1 MiB, the limit for a pools file"),
        Case(
            name: "a pool name with NUL", text: pools + "\n[pools.\"a\\u0000b\"]\ncommand = [\"/bin/true\"]\n",
            says: "pools.toml:8:1: error: a key in [pools] contains a NUL character (\\u0000 after 'a'); names and keys may not"),
        Case(name: "a key with NUL", text: pools + "\n\"x\\u0000y\" = 1\n", says: "error: a key in [pools.kb] contains a NUL character"),
        Case(
            name: "a pool name with a newline", text: pools + "\n[pools.\"a\\nb\"]\ncommand = [\"/bin/true\"]\n",
            says: "pools.toml:8:1: error: pool name 'a\\u{a}b' must be 1 to 63 lowercase letters"),
        Case(
            name: "a pool name with U+202E", text: pools + "\n[pools.\"a\\u202Eb\"]\ncommand = [\"/bin/true\"]\n",
            says: "pools.toml:8:1: error: pool name 'a\\u{202e}b' must be"),
        Case(
            name: "a control socket path over 107 bytes", text: "[supervisor]\ncontrol_socket = \"/" + String(repeating: "s", count: 120) + "\"\n" + pools,
            says: "pools.toml:2:1: error: 'supervisor.control_socket' is 121 bytes long; a UNIX socket address holds at most 107"),
        Case(
            name: "umask as a decimal integer", text: pools + "\numask = 18\n",
            says: "'pools.kb.umask' must be octal digits in a string such as \"0027\" or a TOML octal number such as 0o027, not 18 (a decimal integer, 0o22 in octal)"),
        Case(
            name: "a cron step of 10^20",
            text: pools + """

                [pools.kb.autoscaling]
                enabled = true
                max_replicas = 2
                [pools.kb.autoscaling.cron_trigger]
                start = "*/99999999999999999999 * * * *"
                end = "0 * * * *"
                desired_replicas = 1
                """, says: "the minute field step '99999999999999999999' is too large (at most 1000000)"),
    ]

    @Test func everyHostileReloadIsRefusedAndNothingRunningIsTouched() throws {
        let s = try Scenario(Self.pools)
        mkfifo(s.dir.path + "/fifo", 0o600)
        s.dir.write("huge.env", "A=" + String(repeating: "x", count: (1 << 20) + 1) + "\n", mode: 0o600)
        try s.start()
        #expect(s.waitForWorkers(3))
        #expect(waitUntil(timeout: .seconds(10)) { (try? s.control(["status"]).status) == 0 })
        let before = Set(s.workers.map(\.pid))

        for c in Self.cases {
            s.dir.write("pools.toml", c.text.replacingOccurrences(of: "@DIR@", with: s.dir.path))
            let reload = try s.control(["reload"])
            #expect(reload.status == 1, "\(c): \(reload.allOutput.prefix(2000))")
            #expect(reload.stderr.contains { $0.contains(c.says) }, "\(c): \(reload.stderr.prefix(5).map { $0.prefix(300) })")
            #expect(reload.stderr.contains { $0.contains("nothing changed, the previous pools file keeps running") }, "\(c)")
            let status = try s.control(["status"])
            #expect(status.status == 0, "\(c)")
            #expect(status.stdout.contains { $0.hasPrefix("last reload") && $0.contains("REJECTED") }, "\(c)")
            #expect(Set(s.workers.map(\.pid)) == before, "\(c): workers changed")
        }
        // The supervisor is the same process and still applies a good file.
        s.dir.write("pools.toml", Self.pools.replacingOccurrences(of: "replicas = 2", with: "replicas = 3"))
        #expect(try s.control(["reload"]).status == 0)
        #expect(s.waitForWorkers(4))
        #expect(s.stop() == 0)
    }

    @Test func checkRefusesEachOfThemToo() throws {
        let dir = try TempDir()
        mkfifo(dir.path + "/fifo", 0o600)
        dir.write("huge.env", "A=" + String(repeating: "x", count: (1 << 20) + 1) + "\n", mode: 0o600)
        for c in Self.cases {
            let config = dir.write("pools.toml", c.text.replacingOccurrences(of: "@DIR@", with: dir.path))
            let run = try Harness.run(["check", "--config", config], timeout: .seconds(30))
            #expect(run.status == 1, "\(c): \(run.allOutput.prefix(2000))")
            #expect(run.stderr.contains { $0.contains(c.says) }, "\(c): \(run.stderr.prefix(5).map { $0.prefix(300) })")
        }
    }

    /// TOMLKit 0.6.0 never frees a parsed table (LebJe/TOMLKit#26): about 100 KiB per reload of a file
    /// like this one, when the supervisor parsed in its own process.
    @Test func reloadsDoNotGrowTheSupervisor() throws {
        var text = ""
        for i in 0..<50 {
            text += """
                [pools.p\(i)]
                command = ["/bin/sleep", "1000"]
                replicas = 0
                [pools.p\(i).env]
                QUEUE = "q\(i)"
                LOG_LEVEL = "info"
                DATABASE_POOL_SIZE = "\(i)"
                [pools.p\(i).backoff]
                initial_seconds = 1

                """
        }
        let s = try Scenario(text)
        try s.start()
        #expect(s.supervisor.waitForLine(containing: "starting"))
        func reload(_ n: Int) -> Bool {
            for _ in 0..<n {
                let done = s.supervisor.allOutput.components(separatedBy: "pools.toml reloaded").count
                s.supervisor.signal(SIGHUP)
                guard waitUntil(timeout: .seconds(20), { s.supervisor.allOutput.components(separatedBy: "pools.toml reloaded").count > done }) else { return false }
            }
            return true
        }
        #expect(reload(20))
        let warm = try #require(ProcFS.residentKiB(of: s.supervisor.pid))
        #expect(reload(200))
        let after = try #require(ProcFS.residentKiB(of: s.supervisor.pid))
        // Before the parser moved into a child process: about +20 MiB here.
        #expect(after - warm < 2048, "RSS grew from \(warm) KiB to \(after) KiB over 200 reloads")
        #expect(s.stop() == 0)
    }
}
