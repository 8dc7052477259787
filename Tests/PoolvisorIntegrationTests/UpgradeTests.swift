import Foundation
import Glibc
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
        var pids: [Int32] = []
        #expect(
            waitUntil {
                let workers = s.workers.map(\.pid)
                pids = workers + workers.flatMap { ProcFS.descendants(of: $0) }
                return pids.count == 6
            })
        let guardian = try #require(s.guardian)
        let crash = s.dir.write("crashing-poolvisor", "#!/bin/sh\nif [ \"$1\" = handover-formats ]; then echo 1; exit 0; fi\nexit 3\n", mode: 0o755)
        _ = try s.control(["upgrade", "--binary", crash])
        #expect(p.waitForExit(timeout: .seconds(15)) == 3)
        #expect(waitUntil(timeout: .seconds(1), poll: .milliseconds(5)) { pids.allSatisfy { !ProcFS.isAlive($0) } }, "alive after 1 s: \(pids.filter(ProcFS.isAlive))")
        #expect(waitUntil { !ProcFS.isAlive(guardian) }, "the guardian did not exit")
    }
}
