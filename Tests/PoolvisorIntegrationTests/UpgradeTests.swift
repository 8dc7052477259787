import Foundation
import Glibc
import TestServers
import Testing

/// `poolvisor upgrade`: the running supervisor hands its state to a second copy of the binary and
/// execs it in the same process; the workers never notice.
@Suite struct UpgradeTests {
    /// A second copy of the binary under test, as a package upgrade would install it.
    static func copyOfTheBinary(in dir: TempDir) throws -> String {
        let path = dir.path + "/poolvisor-next"
        try FileManager.default.copyItem(atPath: try Harness.requirePoolvisorBinary(), toPath: path)
        return path
    }

    /// The replicas' pids and restart counts, by "pool/replica".
    func replicas(_ s: Scenario) throws -> [String: (pid: Int, restarts: Int)] {
        var out: [String: (Int, Int)] = [:]
        for pool in (try s.statusJSON()["pools"] as? [[String: Any]]) ?? [] {
            for r in pool["replicas"] as? [[String: Any]] ?? [] {
                out["\(pool["name"] as? String ?? "?")/\(r["replica"] as? Int ?? -1)"] = (r["pid"] as? Int ?? -1, r["restarts"] as? Int ?? -1)
            }
        }
        return out
    }

    @Test func workersKeepTheirPidsRestartsAndOutputAcrossTheExec() throws {
        let s = try Scenario(
            """
            [supervisor]
            drain_seconds = 2
            [pools.sleepers]
            command = ["/bin/sleep", "1000"]
            replicas = 3
            ready_after_seconds = 0
            [pools.talker]
            command = \(shell("i=0; while true; do i=$((i+1)); echo line $i; sleep 0.05; done"))
            ready_after_seconds = 0
            """)
        _ = try s.start()
        #expect(s.waitForWorkers(4))
        // One restart before the upgrade, which the new image must remember.
        let victim = try #require(s.worker("sleepers", 1))
        kill(victim, SIGKILL)
        #expect(waitUntil(timeout: .seconds(15)) { (try? replicas(s))?["sleepers/1"].map { $0.restarts == 1 && $0.pid > 0 && $0.pid != Int(victim) } ?? false })
        #expect(waitUntil(timeout: .seconds(15)) { s.supervisor.stdoutLines.contains { $0.hasSuffix("| line 5") } })
        let before = try replicas(s)
        let pid = s.supervisor.pid
        let guardian = s.guardian

        let next = try Self.copyOfTheBinary(in: s.dir)
        let run = try s.control(["upgrade", "--binary", next])
        #expect(run.status == 0, "\(run.allOutput)")
        #expect(run.stdout.last?.hasPrefix("poolvisor ") == true && run.stdout.last?.contains("took over, pid \(pid)") == true, "\(run.stdout)")

        // The same process, now running the copy; the same workers and counts; the same guardian.
        #expect(ProcFS.readLink("/proc/\(pid)/exe") == next)
        #expect(try replicas(s).mapValues { "\($0.pid):\($0.restarts)" } == before.mapValues { "\($0.pid):\($0.restarts)" })
        let supervisor = try #require(try s.statusJSON()["supervisor"] as? [String: Any])
        #expect(supervisor["upgrades"] as? Int == 1)
        #expect(supervisor["pid"] as? Int == Int(pid))
        #expect(s.guardian == guardian)
        #expect(s.supervisor.allOutput.contains("took over from"))
        // The event ring came along: the crash before the upgrade is still there.
        let events = try s.control(["events", "sleepers"]).stdout
        #expect(events.contains { $0.contains("worker.stopped sleepers/1 pid \(victim): killed by SIGKILL") }, "\(events)")
        #expect(try s.control(["events"]).stdout.contains { $0.contains("supervisor.upgraded: upgrade 1: 4 workers kept") })

        // Output goes on through the same pipe: no line lost or doubled across the exec.
        let upTo = (s.supervisor.stdoutLines.compactMap { Int($0.split(separator: " ").last ?? "") }.max() ?? 0) + 20
        #expect(waitUntil(timeout: .seconds(15)) { s.supervisor.stdoutLines.contains { $0.hasSuffix("| line \(upTo)") } })
        let numbers = s.supervisor.stdoutLines.filter { $0.contains("talker.0") }.compactMap { Int($0.split(separator: " ").last ?? "") }
        #expect(numbers == Array(1...(numbers.last ?? 0)), "\(numbers)")

        // The new image reaps and restarts as the old one did.
        let second = try #require(s.worker("sleepers", 2))
        kill(second, SIGKILL)
        #expect(waitUntil(timeout: .seconds(15)) { (try? replicas(s))?["sleepers/2"].map { $0.restarts == 1 && $0.pid != Int(second) && $0.pid > 0 } ?? false })
        #expect(s.stop() == 0)
    }

    @Test func aBinaryThatCannotTakeOverIsRefusedAndNothingChanges() throws {
        let s = try Scenario(
            """
            [pools.sleepers]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            ready_after_seconds = 0
            """)
        _ = try s.start()
        #expect(s.waitForWorkers(2))
        let workers = s.workers.map(\.pid).sorted()
        for (binary, says) in [("/bin/true", "reads handover formats"), ("/nonexistent/poolvisor", "No such file"), (s.dir.path, "not a regular file")] {
            let run = try s.control(["upgrade", "--binary", binary])
            #expect(run.status == 1)
            #expect(run.stderr.contains { $0.contains("upgrade refused") && $0.contains(says) }, "\(binary): \(run.allOutput)")
        }
        #expect(s.workers.map(\.pid).sorted() == workers)
        let supervisor = try #require(try s.statusJSON()["supervisor"] as? [String: Any])
        #expect(supervisor["upgrades"] as? Int == 0)
        #expect(supervisor["upgrade_refusals"] as? Int == 3)
        #expect(try s.control(["events"]).stdout.count { $0.contains("supervisor.upgrade_refused") } == 3)
        #expect(s.stop() == 0)
    }

    /// The check of the new binary runs beside the loop: one that hangs is killed at 5 s, and status
    /// answers all the while.
    @Test func aHangingBinaryIsRefusedAfterFiveSecondsWithoutBlockingTheLoop() throws {
        let s = try Scenario(
            """
            [pools.sleepers]
            command = ["/bin/sleep", "1000"]
            ready_after_seconds = 0
            """)
        _ = try s.start()
        #expect(s.waitForWorkers(1))
        let hang = s.dir.write("hanging-poolvisor", "#!/bin/sh\nexec sleep 30\n", mode: 0o755)
        let upgrade = try PoolvisorProcess(arguments: ["upgrade", "--binary", hang, "--socket", s.controlSocket])
        #expect(waitUntil { upgrade.stdoutLines.contains { $0.hasPrefix("checking \(hang)") } }, "\(upgrade.allOutput)")
        let clock = ContinuousClock()
        let asked = clock.now
        #expect(try s.control(["status"]).status == 0)
        #expect(asked.duration(to: clock.now) < .seconds(2))
        #expect(upgrade.waitForExit(timeout: .seconds(20)) == 1)
        #expect(upgrade.allOutput.contains("handover-formats did not answer within 5 s"), "\(upgrade.allOutput)")
        #expect(s.stop() == 0)
    }

    /// A new image that passes the check and then dies (here: a script that says it reads format 1 and
    /// exits): every worker tree goes with it, within a second, through the guardian.
    @Test func aNewImageThatDiesLeavesNoWorkerBehind() throws {
        let s = try Scenario(
            """
            [pools.default]
            command = \(shell("sleep 1000 & sleep 1000 & wait"))
            replicas = 2
            ready_after_seconds = 0
            """)
        let p = try s.start()
        #expect(s.waitForWorkers(2))
        let pids = try #require(s.waitForWorkerTrees(count: 6))
        let guardian = try #require(s.guardian)
        let crash = s.dir.write("crashing-poolvisor", "#!/bin/sh\nif [ \"$1\" = handover-formats ]; then echo 1; exit 0; fi\nexit 3\n", mode: 0o755)
        _ = try s.control(["upgrade", "--binary", crash])
        #expect(p.waitForExit(timeout: .seconds(15)) == 3)
        #expect(waitUntil(timeout: .seconds(1), poll: .milliseconds(5)) { pids.allSatisfy { !ProcFS.isAlive($0) } }, "alive after 1 s: \(pids.filter(ProcFS.isAlive))")
        #expect(waitUntil { !ProcFS.isAlive(guardian) }, "the guardian did not exit")
    }

    /// A new image that starts but cannot read what it was handed (here a script hands it another file
    /// in place of the memfd): it refuses a handover that is not one, or one of a future format, stops
    /// every worker it inherited, says why and exits 1. Nothing is left of the worker trees.
    @Test(arguments: [
        ("not json at all", "the handover is not a poolvisor handover"),
        ("poolvisor handover 99\n{}", "the handover is in format 99; this poolvisor reads 1–1"),
        (#"{"format": 1, "from": "0.0.1"}"#, "the handover is not a poolvisor handover"),
        ("poolvisor handover 1\n" + #"{"format": 1, "from": "0.0.1", "reconciler": "SECRET-VALUE"}"#, "the handover cannot be read at "),
    ])
    func aNewImageThatCannotReadTheHandoverStopsEveryWorkerAndExits1(handover: String, why: String) throws {
        let s = try Scenario(
            """
            [pools.default]
            command = \(shell("sleep 1000 & sleep 1000 & wait"))
            replicas = 2
            ready_after_seconds = 0
            [pools.detached]
            command = \(shell("setsid sleep 1001 & wait"))
            ready_after_seconds = 0
            """)
        let p = try s.start()
        #expect(s.waitForWorkers(3))
        let pids = try #require(s.waitForWorkerTrees(count: 8))
        let state = s.dir.write("handover", handover)
        let binary = try Harness.requirePoolvisorBinary()
        let swap = s.dir.write(
            "swapping-poolvisor",
            """
            #!/bin/bash
            # Runs the real binary, but with the file above where the handover should be.
            args=("$@")
            for i in "${!args[@]}"; do
                if [ "${args[$i]}" = --handover ]; then
                    exec {other}<"\(state)"
                    args[$((i + 1))]=$other
                fi
            done
            exec "\(binary)" "${args[@]}"
            """, mode: 0o755)
        _ = try s.control(["upgrade", "--binary", swap])
        #expect(p.waitForExit(timeout: .seconds(15)) == 1)
        #expect(waitUntil(timeout: .seconds(1), poll: .milliseconds(5)) { pids.allSatisfy { !ProcFS.isAlive($0) } }, "alive after 1 s: \(pids.filter(ProcFS.isAlive))")
        let log = p.stdoutLines + p.stderrLines
        let line = log.first { $0.contains("CRITICAL: upgrade: cannot take over: ") } ?? ""
        #expect(line.contains(why) && line.hasSuffix("; stopping the 3 inherited workers and exiting"), "\(log.suffix(5))")
        #expect(!log.contains { $0.contains("SECRET-VALUE") })
    }

    /// Prometheus sees no counter reset across an upgrade: the reconciler's totals are carried, the
    /// Redis events dropped while Redis is unreachable are handed over, and the process's CPU time is
    /// the same process's.
    @Test func countersGoOnAcrossTheExec() throws {
        let port = try freeTCPPorts(1)
        let nobody = try freeLoopbackPort()
        let file = """
            [supervisor]
            env_file = "app.env"
            metrics_listen = "127.0.0.1:\(port)"
            [supervisor.redis_events]
            redis_url_env = "REDIS_URL"
            [pools.web]
            command = ["/bin/sleep", "1000"]
            ready_after_seconds = 0
            [pools.crash]
            command = ["/bin/sh", "-c", "exit 3"]
            [pools.crash.backoff]
            initial_seconds = 0.05
            max_seconds = 0.05
            """
        // Nothing listens on REDIS_URL's port: every event is dropped and counted.
        let s = try Scenario(file, files: ["app.env": "REDIS_URL=redis://127.0.0.1:\(nobody)\n"])
        let p = try s.start()
        #expect(p.waitForLine(containing: "metrics: http://127.0.0.1:\(port)/metrics"))
        let reload = try s.control(["reload"])
        #expect(reload.status == 0, "\(reload.allOutput)")
        typealias Samples = [(name: String, labels: [String: String], value: Double)]
        var before: Samples = []
        #expect(
            waitUntil(timeout: .seconds(20)) {
                before = (try? MetricsTests.scrape(port)) ?? []
                return (MetricsTests.value(before, "poolvisor_redis_events_dropped_total") ?? 0) >= 10
                    && (MetricsTests.value(before, "poolvisor_worker_restarts_total", ["pool": "crash"]) ?? 0) >= 5
            })
        #expect(try s.control(["upgrade", "--binary", try Self.copyOfTheBinary(in: s.dir)]).status == 0)
        let after = try MetricsTests.scrape(port)
        for (name, labels) in [
            ("poolvisor_redis_events_dropped_total", [:]), ("poolvisor_worker_restarts_total", ["pool": "crash"]),
            ("poolvisor_reloads_total", ["result": "applied"]), ("process_cpu_seconds_total", [:]),
        ] as [(String, [String: String])] {
            let was = try #require(MetricsTests.value(before, name, labels), "\(name) before")
            let now = try #require(MetricsTests.value(after, name, labels), "\(name) after")
            #expect(now >= was, "\(name)\(labels) went back from \(was) to \(now)")
        }
        #expect(MetricsTests.value(after, "poolvisor_reloads_total", ["result": "applied"]) == 1)
        let started = try #require(MetricsTests.value(before, "process_start_time_seconds"))
        #expect(abs((MetricsTests.value(after, "process_start_time_seconds") ?? 0) - started) < 0.1)
        #expect(s.stop() == 0)
    }

    /// Issue 18's picture: 50 workers in 4 pools, one in back-off, one draining a worker that ignores
    /// SIGTERM, one autoscaled by a Redis list, one half way through a rollout. After the upgrade every
    /// timer goes on from where it was, the rollout finishes, the autoscaler follows the queue, and no
    /// worker restarted.
    @Test func timersDrainsRolloutsAndAutoscalingGoOnAcrossTheExec() throws {
        let redis = try RedisServer.start()
        defer { redis.destroy() }
        _ = try redis.cli("RPUSH", "jobs", "1", "2", "3", "4", "5")
        let pools = """
            [supervisor]
            env_file = "app.env"
            drain_seconds = 2
            [pools.steady]
            command = ["/bin/sleep", "1000"]
            replicas = 35
            ready_after_seconds = 0
            [pools.crashy]
            command = \(shell("exit 3"))
            [pools.crashy.backoff]
            initial_seconds = 20
            max_seconds = 20
            [pools.stubborn]
            command = \(shell("trap '' TERM; while true; do sleep 1; done"))
            replicas = 2
            drain_seconds = 20
            ready_after_seconds = 0
            [pools.rolling]
            command = ["/bin/sleep", "1000"]
            replicas = 7
            ready_after_seconds = 2
            [pools.rolling.env]
            GENERATION = "@GENERATION@"
            [pools.queue]
            command = ["/bin/sleep", "1000"]
            ready_after_seconds = 0
            [pools.queue.autoscaling]
            min_replicas = 0
            max_replicas = 10
            polling_interval = 0.5
            [pools.queue.autoscaling.keda]
            redis_url_env = "REDIS_URL"
            redis_list = "jobs"
            list_length = 1
            """
        let s = try Scenario(pools.replacingOccurrences(of: "@GENERATION@", with: "1"), files: ["app.env": "REDIS_URL=\(redis.url)\n"])
        _ = try s.start()
        // 35 + 1 (crash-looping) + 2 + 7 + 5 = 50 replicas.
        #expect(waitUntil(timeout: .seconds(30)) { (try? replicas(s))?.count == 50 && s.workers.count >= 49 })

        // The rollout: GENERATION changes, one replica at a time, each ready after 2 s.
        s.dir.write("pools.toml", pools.replacingOccurrences(of: "@GENERATION@", with: "2"))
        #expect(try s.control(["reload"]).status == 0)
        // The drain: replica 1 of stubborn leaves and ignores SIGTERM; SIGKILL comes 20 s later.
        let stubborn = try #require(s.worker("stubborn", 1))
        #expect(try s.control(["scale", "stubborn", "1"]).status == 0)

        func row(_ pool: String, where match: ([String: Any]) -> Bool) -> [String: Any]? {
            ((try? s.statusJSON())?.pool(pool)?["replicas"] as? [[String: Any]])?.first(where: match)
        }
        #expect(waitUntil(timeout: .seconds(15)) { row("crashy") { $0["state"] as? String == "BackOff" } != nil })
        #expect(waitUntil { row("stubborn") { $0["pid"] as? Int == Int(stubborn) }?["sigkill_in_seconds"] != nil })
        #expect(waitUntil(timeout: .seconds(15)) { (row("rolling") { $0["outdated"] as? Bool == false && $0["ready"] as? Bool == true }) != nil })
        // One reading of the timers, just before the upgrade.
        let clock = ContinuousClock()
        let read = clock.now
        let snapshot = try s.statusJSON()
        func value(_ pool: String, _ key: String, where match: ([String: Any]) -> Bool) -> Double? {
            (snapshot.pool(pool)?["replicas"] as? [[String: Any]])?.first(where: match)?[key] as? Double
        }
        let backoff = try #require(value("crashy", "restart_in_seconds") { $0["state"] as? String == "BackOff" })
        let sigkill = try #require(value("stubborn", "sigkill_in_seconds") { $0["pid"] as? Int == Int(stubborn) })
        let before = try replicas(s).filter { !$0.key.hasPrefix("crashy") }
        let outdatedBefore = (snapshot.pool("rolling")?["replicas"] as? [[String: Any]] ?? []).count { $0["outdated"] as? Bool == true }
        #expect(outdatedBefore > 0, "the rollout finished before the upgrade")

        let next = try Self.copyOfTheBinary(in: s.dir)
        #expect(try s.control(["upgrade", "--binary", next]).status == 0)
        // Timers go on from where they were, neither reset nor lost: read again, each has moved on by
        // the time between the readings (within what a status round trip takes).
        let reread = clock.now
        let again = try s.statusJSON()
        let elapsed = read.duration(to: reread)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rows = { (pool: String) in again.pool(pool)?["replicas"] as? [[String: Any]] ?? [] }
        let backoffAfter = try #require(rows("crashy").first { $0["state"] as? String == "BackOff" }?["restart_in_seconds"] as? Double)
        #expect(abs(backoffAfter - (backoff - seconds)) < 0.5, "back-off \(backoff) s, \(seconds) s later \(backoffAfter) s")
        let sigkillAfter = try #require(rows("stubborn").first { $0["pid"] as? Int == Int(stubborn) }?["sigkill_in_seconds"] as? Double)
        #expect(abs(sigkillAfter - (sigkill - seconds)) < 0.5, "SIGKILL in \(sigkill) s, \(seconds) s later \(sigkillAfter) s")
        // Nobody restarted: the same pids and counts (the rollout's and autoscaler's own changes aside).
        let after = try replicas(s)
        for (key, value) in before where !key.hasPrefix("rolling") {
            #expect(after[key].map { "\($0.pid):\($0.restarts)" } == "\(value.pid):\(value.restarts)", "\(key)")
        }
        // The rollout finishes, the autoscaler follows the queue.
        #expect(
            waitUntil(timeout: .seconds(40)) {
                let rows = (try? s.statusJSON())?.pool("rolling")?["replicas"] as? [[String: Any]] ?? []
                return rows.count == 7 && rows.allSatisfy { $0["outdated"] as? Bool == false && $0["ready"] as? Bool == true }
            })
        _ = try redis.cli("RPUSH", "jobs", "6", "7")
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("queue")?["ready"] as? Int == 7 })
        // The drain's SIGKILL, at its deadline, came from the new image.
        #expect(waitUntil(timeout: .seconds(30)) { !ProcFS.isAlive(stubborn) })
        #expect(s.supervisor.allOutput.contains("stubborn/1 (pid \(stubborn), scale-down) stopped: killed after drain deadline"), "\(s.supervisor.allOutput.suffix(2000))")
        #expect(s.stop(timeout: .seconds(40)) == 0)
    }
}
