import Foundation
import Glibc
import Testing

/// Who and where workers run, against the real binary: user, CPUs, nice, umask; env-file permissions.
@Suite struct IsolationTests {
    @Test(.enabled(if: getuid() == 0, "needs root to run workers as another user"))
    func workersRunAsTheirUserPinnedNicedAndWithTheirUmask() throws {
        let s = try Scenario("""
            [pools.confined]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            user = "nobody"
            cpus = "1"
            nice = 5
            umask = "0027"
            ready_after_seconds = 0.1
            [pools.free]
            command = ["/bin/sleep", "1001"]
            worker_subscribe = "kb"
            ready_after_seconds = 0.1
            """)
        try s.start()
        #expect(s.waitForWorkers(2))
        let confined = try #require(s.worker("confined", 0))
        let status = try #require(ProcFS.status(of: confined))
        #expect(status["Uid"]?.split(separator: "\t").map(String.init) == ["65534", "65534", "65534", "65534"])
        #expect(status["Gid"]?.split(separator: "\t").first == "65534")
        #expect(status["Groups"]?.trimmingCharacters(in: .whitespaces) == "65534")
        #expect(status["Cpus_allowed_list"] == "1")
        #expect(status["Umask"] == "0027")
        #expect(nice(of: confined) == 5)
        let env = try #require(ProcFS.environment(of: confined))
        #expect(env["HOME"] == "/nonexistent")
        #expect(env["USER"] == "nobody")

        // The other pool is untouched by any of it.
        let free = try #require(s.worker("free", 0))
        #expect(ProcFS.status(of: free)?["Uid"]?.hasPrefix("0\t") == true)
        #expect(ProcFS.status(of: free)?["Cpus_allowed_list"] != "1" || sysconf(Int32(_SC_NPROCESSORS_ONLN)) == 1)

        // PDEATHSIG survives the change of user (it is set after it): a SIGKILLed supervisor takes the
        // nobody worker with it.
        s.supervisor.signal(SIGKILL)
        #expect(waitUntil(timeout: .seconds(10)) { !ProcFS.isAlive(confined) })
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run workers as another user"))
    func aWorkerRunningAsAnotherUserCanUseItsNotifySocket() throws {
        let s = try Scenario("""
            [pools.kb]
            command = \(python(pythonNotify + """
                notify('READY=1\\nSTATUS=ready as ' + os.environ['USER'])
                time.sleep(1000)
                """))
            worker_subscribe = "all"
            user = "nobody"
            readiness = "notify"
            """)
        chmod(s.dir.path, 0o755)  // the runtime directory lives inside; nobody must be able to reach it
        try s.start()
        #expect(waitUntil(timeout: .seconds(15)) {
            (try? s.control(["status"]).stdout.contains { $0.hasPrefix("  kb/0 ") && $0.contains("Ready") }) == true
        })
        let json = try s.statusJSON()
        let replica = (json.pool("kb")?["replicas"] as? [[String: Any]])?.first
        #expect(replica?["message"] as? String == "ready as nobody")
        #expect(s.stop() == 0)
    }

    @Test func anEnvFileOthersCanWriteIsRefusedAndNoSecretIsPrinted() throws {
        let s = try Scenario("""
            [supervisor]
            env_file = "app.env"
            [pools.default]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            """, files: ["app.env": "API_KEY=Secret-Mode-Value-7\n"])
        chmod(s.dir.url("app.env"), 0o666)
        let check = try Harness.run(["check", "--config", s.configPath])
        #expect(check.status == 1)
        #expect(check.stderr.contains { $0.hasSuffix("error: env file '\(s.dir.url("app.env"))' is writable by every user (mode 666); it holds secrets: chmod 600 (or 640) it") })
        #expect(!check.allOutput.contains("Secret-Mode-Value-7"))

        chmod(s.dir.url("app.env"), 0o644)
        let warned = try Harness.run(["check", "--config", s.configPath])
        #expect(warned.status == 0)
        #expect(warned.stderr.contains { $0.contains("is readable by every user (mode 644)") })
        #expect(!warned.allOutput.contains("Secret-Mode-Value-7"))
    }

    @Test func limitsThatCannotBeEnforcedAreSaidLoudly() throws {
        let s = try Scenario("""
            [pools.kb]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            ready_after_seconds = 0.1
            [pools.kb.resources]
            memory_limit = "256Mi"
            pids_limit = 64
            """)
        try s.start()
        #expect(s.supervisor.waitForLine(containing: "pool kb: memory_limit 256Mi, pids_limit 64 NOT enforced"))
        #expect(waitUntil { (try? s.control(["status"]).stdout.contains("  WARNING: resources limits NOT enforced: this poolvisor does not place workers in cgroups yet")) == true })
        #expect(s.stop() == 0)
    }
}

/// Field 19 of /proc/PID/stat, the nice value.
private func nice(of pid: Int32) -> Int? {
    guard let text = ProcFS.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    return fields.count > 16 ? Int(fields[16]) : nil
}
