import Foundation
import Glibc
import Testing

/// status, reload, scale and restart against the real binary and its control socket.
@Suite struct ControlPlaneTests {
    static let twoPools = """
        [pools.chat]
        command = ["/bin/sleep", "1000"]
        replicas = 2
        worker_subscribe = "all"
        ready_after_seconds = 0.2
        [pools.kb]
        command = ["/bin/sleep", "1001"]
        worker_subscribe = "kb"
        ready_after_seconds = 0.2
        """

    /// A running scenario whose pools are all ready.
    func running(_ pools: String = ControlPlaneTests.twoPools, workers: Int = 3, files: [String: String] = [:]) throws -> Scenario {
        let s = try Scenario(pools, files: files)
        try s.start()
        #expect(s.waitForWorkers(workers))
        #expect(waitUntil(timeout: .seconds(10)) { (try? s.control(["status"]).status) == 0 })
        return s
    }

    @Test func statusShowsWhatReallyRunsAsATableAndAsJSON() throws {
        let s = try running()
        let chat0 = try #require(s.worker("chat", 0))
        let kb0 = try #require(s.worker("kb", 0))

        let table = try s.control(["status"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("POOL chat  Available  ready 2/2  running 2"))
        let row = try #require(table.stdout.first { $0.hasPrefix("  chat/0 ") })
        #expect(row.split(separator: " ", omittingEmptySubsequences: true).prefix(4) == ["chat/0", "\(chat0)", "Ready", "1/1"])

        let json = try s.control(["status", "--json"])
        #expect(json.status == 0)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.joined(separator: "\n").utf8)) as? [String: Any])
        #expect((doc["supervisor"] as? [String: Any])?["pid"] as? Int == Int(s.supervisor.pid))
        let pools = try #require(doc["pools"] as? [[String: Any]])
        #expect(pools.map { $0["name"] as? String } == ["chat", "kb"])
        let kb = try #require(pools[1]["replicas"] as? [[String: Any]])
        #expect(kb.first?["pid"] as? Int == Int(kb0))
        #expect(kb.first?["state"] as? String == "Ready")
        #expect((kb.first?["memory_bytes"] as? Int ?? 0) > 0)

        let one = try s.control(["status", "kb"])
        #expect(one.stdout.contains { $0.hasPrefix("POOL kb") })
        #expect(!one.stdout.contains { $0.hasPrefix("POOL chat") })
        let unknown = try s.control(["status", "kbb"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.joined().contains("no pool 'kbb'; did you mean 'kb'?"))
        #expect(s.stop() == 0)
    }

    @Test func statusExitsThreeWhenDegradedAndOneWhenNobodyListens() throws {
        let s = try Scenario(
            """
            [pools.crashing]
            command = ["/bin/sh", "-c", "exit 3"]
            ready_after_seconds = 5
            """)
        try s.start()
        #expect(s.supervisor.waitForLine(containing: "CrashLoopBackOff"))
        let degraded = try s.control(["status"])
        #expect(degraded.status == 3)
        #expect(degraded.stdout.contains("POOL crashing  Degraded  ready 0/1  running 0") || degraded.stdout.contains("POOL crashing  Degraded  ready 0/1  running 1"))
        #expect(s.stop() == 0)

        let gone = try s.control(["status"])
        #expect(gone.status == 1)
        #expect(gone.stderr.joined().contains("no poolvisor is listening at \(s.dir.path)/run/control.sock"))
    }

    @Test func reloadOfAnUnchangedFileKeepsEveryWorker() throws {
        let s = try running()
        let before = Set(s.workers.map(\.pid))
        let reload = try s.control(["reload"])
        #expect(reload.status == 0)
        #expect(reload.stdout.contains("pool chat: unchanged (2 workers keep running)"))
        #expect(reload.stdout.contains("pool kb: unchanged (1 worker keeps running)"))
        #expect(Set(s.workers.map(\.pid)) == before)

        // SIGHUP does the same, without a client.
        s.supervisor.signal(SIGHUP)
        #expect(s.supervisor.waitForLine(containing: "SIGHUP from pid"))
        #expect(s.supervisor.waitForLine(containing: "pool kb: unchanged"))
        #expect(Set(s.workers.map(\.pid)) == before)
        #expect(s.stop() == 0)
    }

    @Test func aChangedEnvironmentReplacesOnlyThatPoolRollingNeverBelowItsBudget() throws {
        let pools = """
            [pools.chat]
            command = ["/bin/sleep", "1000"]
            replicas = 3
            worker_subscribe = "all"
            ready_after_seconds = 0.3
            drain_seconds = 5
            [pools.chat.env]
            VERSION = "1"
            [pools.chat.disruption_budget]
            min_available = 2
            [pools.kb]
            command = ["/bin/sleep", "1001"]
            worker_subscribe = "kb"
            ready_after_seconds = 0.3
            """
        let s = try running(pools, workers: 4)
        let kb = try #require(s.worker("kb", 0))
        let oldChat = Set(s.workers.filter { $0.env["POOLVISOR_POOL"] == "chat" }.map(\.pid))
        s.dir.write("pools.toml", pools.replacingOccurrences(of: "VERSION = \"1\"", with: "VERSION = \"2\""))

        let reload = try s.control(["reload"])
        #expect(reload.status == 0)
        #expect(reload.stdout.contains("pool chat: environment (VERSION) changed: rolling replacement of 3 workers (at most 1 at a time)"))
        #expect(reload.stdout.contains("pool kb: unchanged (1 worker keeps running)"))

        // While it rolls, chat never has fewer than 2 ready workers, and it ends with 3 new ones.
        var lowest = Int.max
        let done = waitUntil(timeout: .seconds(20)) {
            if let ready = try? s.statusJSON().pool("chat")?["ready"] as? Int { lowest = min(lowest, ready) }
            let chat = s.workers.filter { $0.env["POOLVISOR_POOL"] == "chat" }
            return chat.count == 3 && chat.allSatisfy { $0.env["VERSION"] == "2" } && (try? s.statusJSON().pool("chat")?["state"] as? String) == "Available"
        }
        #expect(done)
        #expect(lowest >= 2)
        #expect(Set(s.workers.filter { $0.env["POOLVISOR_POOL"] == "chat" }.map(\.pid)).isDisjoint(with: oldChat))
        #expect(s.worker("kb", 0) == kb)
        #expect(s.supervisor.waitForLine(containing: "pool chat: rolling replacement complete"))
        #expect(s.stop() == 0)
    }

    @Test func replicasUpStartTheDifferenceAndDownDrainTheHighestIndices() throws {
        let s = try running()
        let chat0 = try #require(s.worker("chat", 0))
        s.dir.write("pools.toml", Self.twoPools.replacingOccurrences(of: "replicas = 2", with: "replicas = 4"))
        #expect(try s.control(["reload"]).stdout.contains("pool chat: replicas 2 → 4"))
        #expect(s.waitForWorkers(5))
        #expect(s.worker("chat", 3) != nil)

        s.dir.write("pools.toml", Self.twoPools.replacingOccurrences(of: "replicas = 2", with: "replicas = 1"))
        #expect(try s.control(["reload"]).status == 0)
        #expect(s.waitForWorkers(2))
        #expect(s.worker("chat", 0) == chat0)
        #expect(s.worker("chat", 1) == nil)
        #expect(s.stop() == 0)
    }

    @Test func anInvalidFileIsRejectedKeepsEverythingRunningAndIsShown() throws {
        let s = try running(files: ["app.env": "API_KEY=Secret-Reload-Value-9\n"])
        let before = Set(s.workers.map(\.pid))
        s.dir.write("pools.toml", Self.twoPools.replacingOccurrences(of: "replicas = 2", with: "replicas = \"two\"") + "\n[supervisor]\nenv_file = \"app.env\"\n")
        let reload = try s.control(["reload"])
        #expect(reload.status == 1)
        #expect(reload.stderr.contains { $0.contains("rejected (1 error); nothing changed, the previous pools file keeps running") })
        #expect(reload.stderr.contains { $0.hasSuffix("pools.toml:3:1: error: 'pools.chat.replicas' must be an integer, not a string") })

        let status = try s.control(["status"])
        #expect(
            status.stdout.contains("last reload 0s ago: REJECTED, running the previous pools file")
                || status.stdout.contains { $0.hasPrefix("last reload") && $0.contains("REJECTED") })
        #expect(status.stdout.contains { $0.contains("'pools.chat.replicas' must be an integer") })
        #expect(Set(s.workers.map(\.pid)) == before)

        // Fixed: applied again.
        s.dir.write("pools.toml", Self.twoPools)
        #expect(try s.control(["reload"]).status == 0)
        #expect(!(try s.control(["status"]).stdout.joined().contains("REJECTED")))
        #expect(s.stop() == 0)
        #expect(!s.supervisor.allOutput.contains("Secret-Reload-Value-9"))
    }

    @Test func scaleAndRestartTouchOnlyTheirPool() throws {
        let s = try running()
        let kb = try #require(s.worker("kb", 0))
        let scale = try s.control(["scale", "chat", "3"])
        #expect(scale.status == 0)
        #expect(
            scale.stdout == [
                "pool chat scaled from 2 to 3 replicas",
                "this lasts until a reload of a pools file that changes chat's replicas (\(s.configPath) says 2); a restart of poolvisor goes back to the file",
            ])
        #expect(s.waitForWorkers(4))

        let before = Set(s.workers.filter { $0.env["POOLVISOR_POOL"] == "chat" }.map(\.pid))
        let restart = try s.control(["restart", "chat"])
        #expect(restart.status == 0)
        #expect(
            waitUntil(timeout: .seconds(15)) {
                let now = s.workers.filter { $0.env["POOLVISOR_POOL"] == "chat" }.map(\.pid)
                return now.count == 3 && Set(now).isDisjoint(with: before)
            })
        #expect(s.worker("kb", 0) == kb)
        #expect(try s.control(["scale", "nope", "1"]).status == 1)
        #expect(s.stop() == 0)
    }

    @Test func aScaleDownDrainsTheIdleWorkerAndKeepsTheBusyOnes() throws {
        let s = try Scenario(
            """
            [pools.kb]
            command = \(python(pythonNotify + """
                notify('READY=1')
                notify('BUSY=0' if os.environ['POOLVISOR_REPLICA'] == '1' else 'BUSY=1')
                time.sleep(1000)
                """))
            replicas = 3
            worker_subscribe = "all"
            readiness = "notify"
            """)
        try s.start()
        #expect(s.waitForWorkers(3))
        #expect(
            waitUntil(timeout: .seconds(15)) {
                let rows = (try? s.statusJSON().pool("kb")?["replicas"] as? [[String: Any]]) ?? []
                return rows.count == 3 && rows.allSatisfy { $0["busy"] is Bool }
            })
        let busy = [try #require(s.worker("kb", 0)), try #require(s.worker("kb", 2))]
        let idle = try #require(s.worker("kb", 1))
        #expect(try s.control(["status"]).stdout.contains { $0.hasPrefix("  kb/1 ") && $0.contains("Ready idle") })

        #expect(try s.control(["scale", "kb", "2"]).status == 0)
        #expect(waitUntil(timeout: .seconds(10)) { !ProcFS.isAlive(idle) || ProcFS.state(of: idle) == "Z" })
        #expect(busy.allSatisfy { ProcFS.isAlive($0) })
        #expect(s.waitForWorkers(2))
        #expect(s.supervisor.waitForLine(containing: "worker kb/1 (pid \(idle), scale-down) stopped"))
        #expect(s.stop() == 0)
    }

    @Test func aClientThatSendsNothingDoesNotBlockAnother() throws {
        let s = try running()
        let silent = try connect(to: s.controlSocket)
        defer { close(silent) }
        let status = try s.control(["status"])
        #expect(status.status == 0)
        #expect(status.stdout.contains { $0.hasPrefix("POOL chat") })
        #expect(s.stop() == 0)
    }

    @Test func aUserOutsideControlGroupIsRefusedAndAMemberMayOnlyRead() throws {
        try #require(getuid() == 0, "needs root to run the client as nobody")
        let s = try Scenario(Self.twoPools + "\n[supervisor]\ncontrol_group = \"nogroup\"\n")
        chmod(s.dir.path, 0o755)
        try s.start()
        #expect(s.waitForWorkers(3))
        #expect(waitUntil { (try? s.control(["status"]).status) == 0 })

        let outsider = try s.control(["status"], as: ["--reuid=65534", "--regid=65533", "--clear-groups"])
        #expect(outsider.status == 1)
        #expect(outsider.stderr.joined().contains("permission denied on \(s.controlSocket)"))

        let member = try s.control(["status"], as: ["--reuid=65534", "--regid=65534", "--clear-groups"])
        #expect(member.status == 0)
        let reload = try s.control(["reload"], as: ["--reuid=65534", "--regid=65534", "--clear-groups"])
        #expect(reload.status == 1)
        #expect(reload.stderr.joined().contains("permission denied: only root or the user poolvisor runs as may do that"))
        #expect(s.stop() == 0)
    }

    @Test func reloadTellsSystemdReloadingThenReady() throws {
        let s = try Scenario(Self.twoPools)
        let systemd = try NotifyListener(in: s.dir)
        try s.start(environment: ["NOTIFY_SOCKET": systemd.path])
        #expect(systemd.waitFor({ $0.hasPrefix("READY=1") }) != nil)
        let readyCount = systemd.messages.count { $0.hasPrefix("READY=1") }
        s.supervisor.signal(SIGHUP)
        let reloading = try #require(systemd.waitForMessage({ $0.contains(field: "RELOADING=1") }))
        #expect(UInt64(reloading.value(of: "MONOTONIC_USEC") ?? "") != nil)
        #expect(waitUntil { systemd.messages.count { $0.hasPrefix("READY=1") } == readyCount + 1 })
        #expect(s.stop() == 0)
    }
}

extension Scenario {
    var controlSocket: String { dir.path + "/run/control.sock" }

    /// Runs `poolvisor <arguments> --socket <this supervisor's socket>`, optionally through
    /// `setpriv <as…>` to run as another user.
    func control(_ arguments: [String], as identity: [String] = []) throws -> Harness.CompletedRun {
        let args = arguments + ["--socket", controlSocket]
        if identity.isEmpty { return try Harness.run(args, timeout: .seconds(30)) }
        return try Harness.run(executable: "/usr/bin/setpriv", identity + [Harness.poolvisorBinary] + args, timeout: .seconds(30))
    }

    func statusJSON() throws -> [String: Any] {
        let run = try control(["status", "--json"])
        return try JSONSerialization.jsonObject(with: Data(run.stdout.joined(separator: "\n").utf8)) as? [String: Any] ?? [:]
    }
}

extension Dictionary where Key == String, Value == Any {
    func pool(_ name: String) -> [String: Any]? {
        (self["pools"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }
}

/// A client socket connected to `path` that sends nothing.
func connect(to path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes + [0])
    }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    if rc != 0 {
        close(fd)
        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
    }
    return fd
}
