import Foundation
import Glibc
import Testing

/// Who and where workers run, against the real binary: user, CPUs, nice, umask; env-file permissions.
@Suite struct IsolationTests {
    @Test(.enabled(if: getuid() == 0, "needs root to run workers as another user"))
    func workersRunAsTheirUserPinnedNicedAndWithTheirUmask() throws {
        let s = try Scenario(
            """
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
        #expect(ProcFS.stat(of: confined)?.nice == 5)
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
        let s = try Scenario(
            """
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
        #expect(
            waitUntil(timeout: .seconds(15)) {
                (try? s.control(["status"]).stdout.contains { $0.hasPrefix("  kb/0 ") && $0.contains("Ready") }) == true
            })
        let json = try s.statusJSON()
        let replica = (json.pool("kb")?["replicas"] as? [[String: Any]])?.first
        #expect(replica?["message"] as? String == "ready as nobody")
        #expect(s.stop() == 0)
    }

    @Test func noSecretFromAnEnvFileAppearsInAnyOutput() throws {
        let secrets = ["Secret-Db-Password-31", "Secret-Api-Key-32", "Secret-Inline-33"]
        let s = try Scenario(
            """
            [supervisor]
            env_file = "app.env"
            [pools.default]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            env_file = "pool.env"
            ready_after_seconds = 0.1
            [pools.default.env]
            TOKEN = "\(secrets[2])"
            [pools.default.resources]
            pids_limit = 64
            """, files: ["app.env": "DATABASE_URL=postgres://app:\(secrets[0])@db/app\n", "pool.env": "API_KEY='\(secrets[1])'\nBROKEN=\"unterminated\n"])
        // A broken env file first: the error names the key, never the value.
        let check = try Harness.run(["check", "--config", s.configPath])
        #expect(check.status == 1)
        s.dir.write("pool.env", "API_KEY='\(secrets[1])'\n", mode: 0o600)
        try s.start(arguments: ["--log-level", "debug"])
        #expect(s.waitForWorkers(1))
        #expect(waitUntil { (try? s.control(["status"]).status) == 0 })
        var outputs = [check.allOutput]
        outputs.append(try s.control(["status"]).allOutput)
        outputs.append(try s.control(["status", "--json"]).allOutput)
        s.dir.write("pool.env", "API_KEY='\(secrets[1])-rotated'\n", mode: 0o600)
        outputs.append(try s.control(["reload"]).allOutput)  // names API_KEY as changed
        outputs.append(try Harness.run(["check", "--config", s.configPath]).allOutput)
        #expect(outputs[3].contains("environment (API_KEY) changed"))
        #expect(s.stop() == 0)
        outputs.append(s.supervisor.allOutput)
        for secret in secrets {
            #expect(!outputs.joined(separator: "\n").contains(secret), "\(secret) was printed")
        }
    }

    @Test func anEnvFileOthersCanWriteIsRefusedAndNoSecretIsPrinted() throws {
        let s = try Scenario(
            """
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

    static let cgroupsUsable = getuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/memory.limit_in_bytes")

    @Test(.enabled(if: IsolationTests.cgroupsUsable, "needs root and cgroup v1 memory, cpu, cpuacct and pids controllers"))
    func aWorkerOverItsMemoryLimitIsOOMKilledAndRestartedWithBackoff() throws {
        let s = try Scenario(
            """
            [pools.hog]
            command = ["/usr/bin/python3", "-c", "import time; time.sleep(0.2); x = bytearray(300 * 1024 * 1024); time.sleep(100)"]
            worker_subscribe = "all"
            ready_after_seconds = 0.1
            [pools.hog.resources]
            memory_limit = "64Mi"
            [pools.hog.backoff]
            initial_seconds = 30
            """)
        try s.start()
        #expect(s.supervisor.waitForLine(containing: "exited: OOMKilled; restarting now"))
        #expect(s.supervisor.waitForLine(containing: "exited: OOMKilled; restarting in"))
        let json = try s.statusJSON()
        let replica = try #require((json.pool("hog")?["replicas"] as? [[String: Any]])?.first)
        #expect(replica["last_exit"] as? String == "OOMKilled")
        #expect(replica["state"] as? String == "BackOff")
        #expect(!s.supervisor.allOutput.contains("NOT enforced"))
        #expect(s.stop() == 0)
        #expect(!ownCgroupChildren().contains("poolvisor-\(s.supervisor.pid)"))  // removed at the end
    }

    @Test(.enabled(if: IsolationTests.cgroupsUsable, "needs root and cgroup v1 controllers"))
    func pidsLimitStopsAForkBombAndCPULimitHoldsABusyWorker() throws {
        // The bomb starts sleepers until the kernel refuses a fork, says how many it got, and holds
        // them until the test lets it exit: the count is read while they certainly exist.
        let dir = try TempDir()
        defer { dir.remove() }
        let letGo = dir.url("let-go")
        let bomb = """
            import os, subprocess, time
            started = 0
            try:
                for _ in range(200):
                    subprocess.Popen(["/bin/sleep", "1003"])
                    started += 1
            except OSError as e:
                print(f"fork refused after {started} sleepers: {e.strerror}", flush=True)
            while not os.path.exists("\(letGo)"):
                time.sleep(0.01)
            os._exit(2)
            """
        let s = try Scenario(
            """
            [pools.bomb]
            command = \(python(bomb))
            worker_subscribe = "all"
            ready_after_seconds = 0.1
            [pools.bomb.backoff]
            initial_seconds = 300
            [pools.bomb.resources]
            pids_limit = 16
            [pools.busy]
            command = ["/bin/sh", "-c", "while :; do :; done"]
            worker_subscribe = "kb"
            ready_after_seconds = 0.1
            [pools.busy.resources]
            cpu_limit = 0.5
            """)
        try s.start()
        // Python cannot fork past 16 processes (itself included); its children die with its cgroup.
        let refused = try #require(s.supervisor.waitForLine { $0.contains("bomb.0 | fork refused after") })
        let count = refused.split(separator: "fork refused after ").last?.split(separator: " ").first
        let started = try #require(count.flatMap { Int($0) })
        #expect(started > 0 && started < 16)
        let live = sleepers(1003).count
        #expect(live > 0 && live <= started)
        _ = dir.write("let-go", "")
        #expect(s.supervisor.waitForLine { $0.contains("worker bomb/0") && $0.contains("exited: exit code 2") } != nil)
        #expect(waitUntil(timeout: .seconds(10)) { sleepers(1003).isEmpty })
        let busy = try #require(waitFor { s.worker("busy", 0) })
        _ = try s.statusJSON()  // the first sample
        let before = ProcFS.cpuTicks(of: busy) ?? 0
        let start = ContinuousClock.now
        #expect(waitUntil(timeout: .seconds(5)) { ContinuousClock.now - start >= .seconds(2) })
        let used = Double((ProcFS.cpuTicks(of: busy) ?? 0) - before) / Double(sysconf(Int32(_SC_CLK_TCK)))
        let elapsed = (ContinuousClock.now - start).timeInterval
        #expect(used / elapsed < 0.7, "busy worker used \(used) s of CPU in \(elapsed) s")
        #expect(used / elapsed > 0.05)  // it did run (the machine may be busy with other tests)
        #expect(s.stop() == 0)
    }

    @Test(.enabled(if: IsolationTests.cgroupsUsable, "needs root and cgroup v1 controllers"))
    func aWorkerThatDoubleForksIsKilledWhole() throws {
        let s = try Scenario(
            """
            [pools.escape]
            command = ["/bin/sh", "-c", "setsid /bin/sleep 1002 & exec /bin/sleep 1000"]
            worker_subscribe = "all"
            ready_after_seconds = 0.1
            drain_seconds = 1
            [pools.escape.resources]
            pids_limit = 64
            """)
        try s.start()
        #expect(waitUntil { sleepers(1002).count == 1 })
        let escaped = try #require(sleepers(1002).first)
        #expect(ProcFS.session(of: escaped) == escaped)  // its own session: out of the worker's group
        // A rolling restart drains the old worker; its whole cgroup goes with it.
        #expect(try s.control(["restart", "escape"]).status == 0)
        #expect(waitUntil(timeout: .seconds(10)) { !ProcFS.isAlive(escaped) || ProcFS.state(of: escaped) == "Z" })
        #expect(s.supervisor.isRunning)
        #expect(s.stop() == 0)
    }

}

/// Polls for a value.
private func waitFor<T>(timeout: Duration = .seconds(10), _ produce: () -> T?) -> T? {
    var value: T?
    _ = waitUntil(timeout: timeout) {
        value = produce()
        return value != nil
    }
    return value
}

/// pids of `/bin/sleep SECONDS` processes.
private func sleepers(_ seconds: Int) -> [Int32] {
    ProcFS.allPIDs().filter { ProcFS.commandLine(of: $0) == ["/bin/sleep", String(seconds)] && ProcFS.state(of: $0) != "Z" }
}

/// Directories in this process's own memory cgroup.
private func ownCgroupChildren() -> [String] {
    guard let line = ProcFS.readText("/proc/self/cgroup")?.split(separator: "\n").first(where: { $0.contains(":memory:") }),
        let path = line.split(separator: ":", maxSplits: 2).last
    else { return [] }
    return ProcFS.directoryEntries("/sys/fs/cgroup/memory" + (path == "/" ? "" : String(path))) ?? []
}
