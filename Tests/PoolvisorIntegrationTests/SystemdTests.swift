import Foundation
import Glibc
import Testing

/// The unit file under a real systemd 252 (../shared/systemd-sandbox boots one as PID 1 in private
/// namespaces). Skipped, with a message, where the sandbox or root is missing.
@Suite(.serialized) struct SystemdTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let sandbox = repository + "/../shared/systemd-sandbox/sdsandbox"
    static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: sandbox) }

    /// Runs the sandbox tool; returns (status, stdout).
    @discardableResult
    static func sd(_ name: String, _ args: String...) throws -> (status: Int32, output: String) {
        try sd(name, arguments: args)
    }

    @discardableResult
    static func sd(_ name: String, arguments: [String]) throws -> (status: Int32, output: String) {
        let run = try Harness.run(executable: sandbox, arguments, environment: ["SDSANDBOX_NAME": name, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], timeout: .seconds(90))
        return (run.status ?? -1, run.stdout.joined(separator: "\n"))
    }

    static func show(_ name: String, _ property: String) throws -> String {
        try sd(name, "systemctl", "show", "-p", property, "--value", "poolvisor").output
    }

    /// Puts the binary, the pools files (sandbox path → host file) and the units into the sandbox.
    static func install(_ name: String, pools: KeyValuePairs<String, String>, units: [String] = ["poolvisor.service"]) throws {
        try #require(sd(name, "install-bin", Harness.poolvisorBinary).status == 0)
        try sd(name, "exec", "mkdir", "-p", "/etc/poolvisor")
        for (destination, file) in pools {
            try #require(sd(name, "cp", file, destination).status == 0)
        }
        let paths = units.map { repository + "/systemd/" + $0 }
        try #require(sd(name, arguments: ["install-unit"] + paths).status == 0)
    }

    @Test(.enabled(if: SystemdTests.available, "needs root and ../shared/systemd-sandbox/sdsandbox"))
    func startsReadyRestartsAWorkerAndDrainsOnStop() throws {
        let name = "pvtest\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let pools = dir.write(
            "pools.toml",
            """
            [supervisor]
            name = "sdtest"
            drain_seconds = 5
            [pools.default]
            command = ["/bin/sleep", "100000"]
            replicas = 3
            worker_subscribe = "all"
            ready_after_seconds = 0.5
            [pools.graceful]
            command = ["/bin/sh", "-c", "trap 'echo finishing; exit 0' TERM; echo up; while :; do sleep 0.1; done"]
            ready_after_seconds = 0.5
            """)
        try SystemdTests.install(name, pools: ["/etc/poolvisor/pools.toml": pools])

        // Type=notify: start returns once poolvisor said READY=1, i.e. once every worker was ready.
        #expect(try SystemdTests.sd(name, "systemctl", "start", "poolvisor").status == 0)
        #expect(try SystemdTests.show(name, "ActiveState") == "active")
        #expect(try SystemdTests.show(name, "StatusText") == "2 pools, 4/4 workers ready")
        let mainPID = try SystemdTests.show(name, "MainPID")

        // A worker killed behind poolvisor's back is replaced; systemd sees nothing of it.
        let before = try SystemdTests.sd(name, "exec", "pgrep", "-f", "^/bin/sleep 100000$").output
        let victim = try #require(before.split(separator: "\n").first.map(String.init))
        try SystemdTests.sd(name, "exec", "kill", "-KILL", victim)
        #expect(
            waitUntil(timeout: .seconds(10)) {
                let now = (try? SystemdTests.sd(name, "exec", "pgrep", "-f", "^/bin/sleep 100000$").output) ?? ""
                return now.split(separator: "\n").count == 3 && !now.split(separator: "\n").contains(Substring(victim))
            })
        #expect(waitUntil(timeout: .seconds(10)) { (try? SystemdTests.show(name, "StatusText")) == "2 pools, 4/4 workers ready" })
        #expect(try SystemdTests.show(name, "MainPID") == mainPID)
        #expect(try SystemdTests.show(name, "NRestarts") == "0")

        // stop: poolvisor drains (KillMode=mixed lets it), every worker is gone, the unit ends cleanly.
        #expect(try SystemdTests.sd(name, "systemctl", "stop", "poolvisor").status == 0)
        #expect(try SystemdTests.show(name, "ActiveState") == "inactive")
        #expect(try SystemdTests.show(name, "Result") == "success")
        #expect(try SystemdTests.sd(name, "exec", "pgrep", "-f", "^/bin/sleep 100000$").output.isEmpty)
        let journal = try SystemdTests.sd(name, "journalctl", "-u", "poolvisor", "--no-pager", "-o", "cat").output
        #expect(journal.contains("all 4 workers ready"))
        #expect(journal.contains("worker default/"))
        #expect(journal.contains("exited: killed by SIGKILL; restarting now"))
        #expect(journal.contains("worker graceful/0 (pid"))
        // Each worker writes straight into the journal, tagged with its pool's name, under the unit.
        let graceful = try SystemdTests.sd(name, "journalctl", "-u", "poolvisor", "-t", "graceful", "--no-pager", "-o", "cat").output
        #expect(graceful.split(separator: "\n").filter { $0 == "up" }.count >= 1)
        #expect(graceful.contains("finishing"))
        #expect(!graceful.contains("all workers stopped"))
        let fields = try SystemdTests.sd(name, "journalctl", "-u", "poolvisor", "-t", "graceful", "--no-pager", "-o", "verbose", "MESSAGE=finishing").output
        #expect(fields.contains("_SYSTEMD_UNIT=poolvisor.service"))
        #expect(fields.contains("_COMM=sh"))
        #expect(journal.contains("all workers stopped"))
    }

    @Test(.enabled(if: SystemdTests.available, "needs root and ../shared/systemd-sandbox/sdsandbox"))
    func reloadAndStatusThroughSystemctlAndTemplateInstances() throws {
        let name = "pvreload\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let one = """
            [pools.default]
            command = ["/bin/sleep", "100001"]
            worker_subscribe = "all"
            ready_after_seconds = 0.2
            """
        let pools = dir.write("pools.toml", one)
        let two = dir.write("two.toml", one + "\nreplicas = 2\n")
        let broken = dir.write("broken.toml", one + "\nreplicas = \"two\"\n")
        try SystemdTests.install(
            name, pools: ["/etc/poolvisor/pools.toml": pools, "/etc/poolvisor/a.toml": pools],
            units: ["poolvisor.service", "poolvisor@.service"])
        #expect(try SystemdTests.sd(name, "systemctl", "start", "poolvisor").status == 0)
        let workers = { (try? SystemdTests.sd(name, "exec", "pgrep", "-f", "^/bin/sleep 100001$").output.split(separator: "\n").count) ?? -1 }
        #expect(workers() == 1)

        // systemctl reload runs `poolvisor reload`, which waits: when it returns, the change is made.
        let status = try SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "status")
        #expect(status.status == 0)
        #expect(status.output.contains("POOL default  Available  ready 1/1  running 1"))
        try SystemdTests.sd(name, "cp", two, "/etc/poolvisor/pools.toml")
        #expect(try SystemdTests.sd(name, "systemctl", "reload", "poolvisor").status == 0)
        #expect(workers() == 2)
        #expect(waitUntil { (try? SystemdTests.show(name, "StatusText")) == "1 pool, 2/2 workers ready" })

        // A broken file: the reload job fails, the old configuration keeps running, status says why.
        try SystemdTests.sd(name, "cp", broken, "/etc/poolvisor/pools.toml")
        #expect(try SystemdTests.sd(name, "systemctl", "reload", "poolvisor").status != 0)
        #expect(try SystemdTests.show(name, "ActiveState") == "active")
        #expect(try SystemdTests.show(name, "StatusText") == "1 pool, 2/2 workers ready; last reload REJECTED, running the previous pools file")
        #expect(workers() == 2)
        let rejected = try SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "status").output
        #expect(rejected.contains("'pools.default.replicas' must be an integer, not a string"))

        // A second instance from the template, with its own pools file and socket.
        #expect(try SystemdTests.sd(name, "systemctl", "start", "poolvisor@a").status == 0)
        let a = try SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "status", "--instance", "a")
        #expect(a.status == 0)
        #expect(a.output.contains("/etc/poolvisor/a.toml"))
        #expect(workers() == 3)
        #expect(try SystemdTests.sd(name, "systemctl", "stop", "poolvisor", "poolvisor@a").status == 0)
        #expect(workers() == 0)
    }

    @Test(.enabled(if: SystemdTests.available, "needs root and ../shared/systemd-sandbox/sdsandbox"))
    func workersGetCgroupsInTheDelegatedSubtree() throws {
        let name = "pvcg\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let pools = dir.write(
            "pools.toml",
            """
            [pools.escape]
            command = ["/bin/sh", "-c", "setsid /bin/sleep 1004 & exec /bin/sleep 1005"]
            worker_subscribe = "all"
            ready_after_seconds = 0.2
            drain_seconds = 2
            [pools.escape.resources]
            pids_limit = 64
            """)
        try SystemdTests.install(name, pools: ["/etc/poolvisor/pools.toml": pools])
        #expect(try SystemdTests.sd(name, "systemctl", "start", "poolvisor").status == 0)
        let mainPID = try SystemdTests.show(name, "MainPID")

        // poolvisor moved itself into a leaf of its unit's cgroup; the worker has a cgroup of its own.
        // (On this hybrid host /proc/PID/cgroup also lists the v1 hierarchies; the v2 line starts with "0::".)
        let unified = { (pid: String) in
            (try? SystemdTests.sd(name, "exec", "cat", "/proc/\(pid)/cgroup").output.split(separator: "\n").first { $0.hasPrefix("0::") }.map(String.init)) ?? nil
        }
        #expect(unified(mainPID) == "0::/system.slice/poolvisor.service/supervisor")
        let sleeper = { (seconds: Int) in (try? SystemdTests.sd(name, "exec", "pgrep", "-f", "^/bin/sleep \(seconds)$").output.split(separator: "\n").map(String.init)) ?? [] }
        let worker = try #require(sleeper(1005).first)
        let workerCgroup = try #require(unified(worker))
        #expect(workerCgroup.hasPrefix("0::/system.slice/poolvisor.service/escape.0."))
        let escaped = try #require(sleeper(1004).first)
        #expect(unified(escaped) == workerCgroup)

        // Limits are enforced where the controllers were delegated, and said not to be where not.
        let status = try SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "status").output
        let controllers = try SystemdTests.sd(name, "exec", "cat", "/sys/fs/cgroup/system.slice/poolvisor.service/cgroup.controllers").output
        if controllers.contains("pids") {
            #expect(!status.contains("NOT enforced"))
        } else {
            #expect(status.contains("WARNING: resources limits NOT enforced:"))
        }

        // The setsid'd grandchild goes with its worker (cgroup.kill) when the pool is restarted.
        #expect(try SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "restart", "escape").status == 0)
        #expect(waitUntil(timeout: .seconds(15)) { !sleeper(1004).contains(escaped) && sleeper(1005).count == 1 && !sleeper(1005).contains(worker) })
        #expect(try SystemdTests.sd(name, "systemctl", "stop", "poolvisor").status == 0)
        #expect(try SystemdTests.show(name, "Result") == "success")
        #expect(sleeper(1004).isEmpty && sleeper(1005).isEmpty)
    }

    /// A readiness probe holds READY=1 to systemd, and poolvisor's EXTEND_TIMEOUT_USEC keeps systemd from
    /// killing it at TimeoutStartSec while it waits: the unit stays activating past a 3 s start timeout,
    /// and is active once the probe passes.
    @Test(.enabled(if: SystemdTests.available, "needs root and ../shared/systemd-sandbox/sdsandbox"))
    func aReadinessProbeHoldsReadyAndTheStartTimeoutIsExtended() throws {
        let name = "pvprobe\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let pools = dir.write(
            "pools.toml",
            """
            [supervisor]
            ready_timeout_seconds = 60
            [pools.web]
            command = ["/bin/sleep", "1007"]
            [pools.web.readiness_probe]
            exec = ["/bin/test", "-e", "/run/probe-ok"]
            period_seconds = 0.2
            """)
        try SystemdTests.install(name, pools: ["/etc/poolvisor/pools.toml": pools])
        try #require(SystemdTests.sd(name, "exec", "mkdir", "-p", "/etc/systemd/system/poolvisor.service.d").status == 0)
        let dropIn = dir.write("timeout.conf", "[Service]\nTimeoutStartSec=3\n")
        try #require(SystemdTests.sd(name, "cp", dropIn, "/etc/systemd/system/poolvisor.service.d/timeout.conf").status == 0)
        try #require(SystemdTests.sd(name, "systemctl", "daemon-reload").status == 0)
        #expect(try SystemdTests.show(name, "TimeoutStartUSec") == "3s")

        let started = ContinuousClock.now
        #expect(try SystemdTests.sd(name, "systemctl", "start", "--no-block", "poolvisor").status == 0)
        // Past the 3 s start timeout (with a margin), still starting: not killed, not ready.
        var state = ""
        _ = waitUntil(timeout: .seconds(20)) {
            state = (try? SystemdTests.show(name, "ActiveState")) ?? "?"
            return state != "activating" || ContinuousClock.now - started > .seconds(5)
        }
        #expect(state == "activating")
        #expect(try SystemdTests.show(name, "StatusText") == "1 pool, 0/1 workers ready")
        #expect(try SystemdTests.show(name, "NRestarts") == "0")

        try SystemdTests.sd(name, "exec", "touch", "/run/probe-ok")
        #expect(waitUntil(timeout: .seconds(15)) { (try? SystemdTests.show(name, "ActiveState")) == "active" })
        #expect(try SystemdTests.show(name, "StatusText") == "1 pool, 1/1 workers ready")
        #expect(try SystemdTests.sd(name, "systemctl", "stop", "poolvisor").status == 0)
        #expect(try SystemdTests.show(name, "Result") == "success")
    }

    /// Each lifecycle event is a journal record of its own: `journalctl MESSAGE_ID=…` finds them, with
    /// the pool, replica and pid as fields.
    @Test(.enabled(if: SystemdTests.available, "needs root and ../shared/systemd-sandbox/sdsandbox"))
    func eventsAreJournalRecordsWithAMessageIDPerType() throws {
        let name = "pvevents\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let pools = dir.write(
            "pools.toml",
            """
            [pools.crash]
            command = ["/bin/sh", "-c", "sleep 0.2; exit 7"]
            ready_after_seconds = 0.1
            [pools.crash.backoff]
            initial_seconds = 60
            """)
        try SystemdTests.install(name, pools: ["/etc/poolvisor/pools.toml": pools])
        #expect(try SystemdTests.sd(name, "systemctl", "start", "--no-block", "poolvisor").status == 0)
        let stopped = "7f3e2a9c5b1d4e8fa6c0d2b4e6f81a08"  // worker.stopped, as the README lists it
        var records: [[String: Any]] = []
        #expect(
            waitUntil(timeout: .seconds(20)) {
                let out = (try? SystemdTests.sd(name, "exec", "journalctl", "-o", "json", "--no-pager", "MESSAGE_ID=\(stopped)").output) ?? ""
                records = out.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                return records.count >= 2
            })
        let first = try #require(records.first)
        #expect(first["POOLVISOR_EVENT"] as? String == "worker.stopped")
        #expect(first["POOLVISOR_POOL"] as? String == "crash")
        #expect(first["POOLVISOR_REPLICA"] as? String == "0")
        #expect(first["POOLVISOR_DETAIL"] as? String == "exit code 7")
        #expect((first["MESSAGE"] as? String)?.hasPrefix("event worker.stopped crash/0: exit code 7") == true)
        #expect(first["_SYSTEMD_UNIT"] as? String == "poolvisor.service")
        #expect(try SystemdTests.sd(name, "systemctl", "stop", "poolvisor").status == 0)
    }

    /// `nice = -5` needs CAP_SYS_NICE, which the shipped unit's CapabilityBoundingSet= must keep: without
    /// it every spawn of the pool fails (setpriority: Permission denied) and the pool crash-loops.
    @Test(.enabled(if: SystemdTests.available, "needs root and ../shared/systemd-sandbox/sdsandbox"))
    func aNegativeNiceWorksUnderTheShippedUnits() throws {
        let name = "pvnice\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let pools = dir.write(
            "pools.toml",
            """
            [supervisor]
            ready_timeout_seconds = 3
            [pools.first]
            command = ["/bin/sleep", "1006"]
            worker_subscribe = "all"
            nice = -5
            ready_after_seconds = 0.2
            """)
        try SystemdTests.install(
            name, pools: ["/etc/poolvisor/pools.toml": pools, "/etc/poolvisor/b.toml": pools],
            units: ["poolvisor.service", "poolvisor@.service"])
        for unit in ["poolvisor", "poolvisor@b"] {
            #expect(try SystemdTests.sd(name, "systemctl", "start", unit).status == 0)
            let sleeper = { (try? SystemdTests.sd(name, "exec", "pgrep", "-f", "^/bin/sleep 1006$").output.split(separator: "\n").map(String.init)) ?? [] }
            let found = waitUntil(timeout: .seconds(5)) { sleeper().count == 1 }
            let instance = unit == "poolvisor" ? [] : ["--instance", "b"]
            let status = try SystemdTests.sd(name, arguments: ["exec", "/usr/local/bin/poolvisor", "status"] + instance).output
            #expect(found, "no worker of \(unit) with nice = -5; poolvisor status:\n\(status)")
            if let worker = sleeper().first {
                let stat = try SystemdTests.sd(name, "exec", "cat", "/proc/\(worker)/stat").output
                #expect(ProcFS.parseStat(stat)?.nice == -5, "\(unit): /proc/\(worker)/stat: \(stat)")
            }
            #expect(!status.contains("spawn failed"), "\(unit)")
            #expect(try SystemdTests.sd(name, "systemctl", "stop", unit).status == 0)
        }
    }

    /// Whether a cgroup2 hierarchy here has the controllers poolvisor needs for limits (on a hybrid
    /// host like this build machine they are bound to the v1 hierarchies instead).
    static var cgroup2HasControllers: Bool {
        let text = ["/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/unified/cgroup.controllers"]
            .compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined(separator: " ")
        return ["memory", "pids", "cpu"].allSatisfy { text.contains($0) }
    }

    @Test(
        .enabled(
            if: SystemdTests.available && SystemdTests.cgroup2HasControllers,
            "needs the systemd sandbox and a cgroup2 hierarchy with the memory, cpu and pids controllers (this host binds them to cgroup v1; the v1 path is tested in IsolationTests)"
        ))
    func limitsAndOOMKilledOnCgroupV2() throws {
        let name = "pvoom\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let pools = dir.write(
            "pools.toml",
            """
            [supervisor]
            ready_timeout_seconds = 2
            [pools.hog]
            command = ["/usr/bin/python3", "-c", "import time; time.sleep(0.3); x = bytearray(300 * 1024 * 1024); time.sleep(100)"]
            worker_subscribe = "all"
            ready_after_seconds = 0.1
            [pools.hog.resources]
            memory_limit = "64Mi"
            pids_limit = 32
            """)
        try SystemdTests.install(name, pools: ["/etc/poolvisor/pools.toml": pools])
        #expect(try SystemdTests.sd(name, "systemctl", "start", "poolvisor").status == 0)
        #expect(
            waitUntil(timeout: .seconds(20)) {
                ((try? SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "status").output) ?? "").contains("OOMKilled")
            })
        let status = try SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "status").output
        #expect(!status.contains("NOT enforced"))
        #expect(try SystemdTests.sd(name, "systemctl", "stop", "poolvisor").status == 0)
    }
}
