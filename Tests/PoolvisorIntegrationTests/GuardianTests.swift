import Foundation
import Glibc
import Testing

/// Issue 18: whatever kills poolvisor, nothing its workers started outlives it by more than a second,
/// without systemd and without cgroups (the guardian, `poolvisor-guard`).
@Suite struct GuardianTests {
    /// A shell worker's children do not inherit PDEATHSIG: only the guardian kills them.
    @Test func aSigkilledSupervisorTakesEveryWorkersTreeWithItWithinASecond() throws {
        let s = try Scenario(
            """
            [pools.default]
            command = \(shell("sleep 1000 & sleep 1000 & wait"))
            replicas = 2
            worker_subscribe = "all"
            """)
        let p = try s.start()
        #expect(s.waitForWorkers(2))
        let pids = try #require(s.waitForWorkerTrees(count: 6))
        let guardian = try #require(s.guardian)
        p.kill()
        let clock = ContinuousClock()
        let killed = clock.now
        #expect(waitUntil(timeout: .seconds(1), poll: .milliseconds(5)) { pids.allSatisfy { !ProcFS.isAlive($0) } }, "alive after 1 s: \(pids.filter(ProcFS.isAlive))")
        let took = killed.duration(to: clock.now)
        #expect(waitUntil { !ProcFS.isAlive(guardian) }, "the guardian did not exit")
        #expect(took < .seconds(1), "took \(took)")
    }

    /// A grandchild in a session of its own has left the worker's process group and tree; it still
    /// carries POOLVISOR_RUN.
    @Test func aSetsidGrandchildGoesTooAndTheGuardianSaysSo() throws {
        let s = try Scenario(
            """
            [pools.default]
            command = \(shell("setsid sleep 1000 & echo $! > \"$PID_FILE\"; wait"))
            worker_subscribe = "all"
            [pools.default.env]
            PID_FILE = "@DIR@/setsid.pid"
            """)
        let p = try s.start()
        let escaped = try #require(s.waitForPID(in: "setsid.pid"))
        let worker = try #require(s.worker("default", 0))
        #expect(waitUntil { ProcFS.session(of: escaped) == escaped })
        let token = try #require(ProcFS.environment(of: worker)?["POOLVISOR_RUN"])
        #expect(token.utf8.count == 32 && token.allSatisfy(\.isHexDigit))
        #expect(ProcFS.environment(of: escaped)?["POOLVISOR_RUN"] == token)
        #expect(ProcFS.environment(of: s.supervisor.pid)?["POOLVISOR_RUN"] == nil)
        p.kill()
        #expect(waitUntil(timeout: .seconds(1), poll: .milliseconds(5)) { !ProcFS.isAlive(escaped) && !ProcFS.isAlive(worker) })
        #expect(p.waitForLine(containing: "poolvisor-guard: poolvisor (pid \(p.pid)) is gone; killed"))
    }

    /// While poolvisor lives the guardian only waits (in its own session, asleep), and a normal stop
    /// leaves none behind.
    @Test func theGuardianNeverFiresWhilePoolvisorLivesAndLeavesWithIt() throws {
        let s = try Scenario(
            """
            [pools.default]
            command = \(shell("sleep 1000 & sleep 1000 & wait"))
            replicas = 2
            worker_subscribe = "all"
            """)
        try s.start()
        #expect(s.waitForWorkers(2))
        let pids = try #require(s.waitForWorkerTrees(count: 6))
        let guardian = try #require(s.guardian)
        #expect(ProcFS.session(of: guardian) == guardian)
        // Blanked: a poolvisor run as another's worker has a guardian the outer one must not kill.
        #expect(ProcFS.environment(of: s.supervisor.pid)?["PATH"] != nil)
        #expect(ProcFS.environment(of: guardian)?["PATH"] == nil)
        #expect(try s.control(["status"]).stdout.contains { $0.contains("default") })
        // A second of life: nothing below the workers is killed, the guardian is asleep on its pipe.
        #expect(!waitUntil(timeout: .seconds(1)) { !pids.allSatisfy(ProcFS.isAlive) })
        #expect(ProcFS.state(of: guardian) == "S")
        #expect(ProcFS.cpuTicks(of: guardian) == 0)
        #expect(try s.control(["status"]).stdout.contains { $0.contains("default") })
        #expect(s.stop() == 0)
        #expect(!ProcFS.isAlive(guardian))
        #expect(ProcFS.stat(of: guardian) == nil, "reaped by poolvisor, not left a zombie")
        #expect(!s.supervisor.allOutput.contains("guardian"))
    }

    /// Killed by someone else, the guardian is started again and still knows every worker.
    @Test func aKilledGuardianIsReplacedAndTheNewOneStillFires() throws {
        let s = try Scenario(
            """
            [pools.default]
            command = \(shell("sleep 1000 & wait"))
            replicas = 2
            worker_subscribe = "all"
            """)
        let p = try s.start()
        #expect(s.waitForWorkers(2))
        let pids = try #require(s.waitForWorkerTrees(count: 4))
        let first = try #require(s.guardian)
        kill(first, SIGTERM)  // ignored: only the end of its pipe (or SIGKILL) ends it
        kill(first, SIGINT)
        #expect(!waitUntil(timeout: .milliseconds(300)) { !ProcFS.isAlive(first) })
        kill(first, SIGKILL)
        #expect(p.waitForLine(containing: "the guardian (pid \(first)) was killed by SIGKILL; started a new one"))
        var second: Int32?
        #expect(
            waitUntil {
                second = s.guardian; return second != nil && second != first
            })
        #expect(pids.allSatisfy(ProcFS.isAlive))
        p.kill()
        #expect(waitUntil(timeout: .seconds(1), poll: .milliseconds(5)) { pids.allSatisfy { !ProcFS.isAlive($0) } }, "alive after 1 s: \(pids.filter(ProcFS.isAlive))")
    }
}
