import Foundation
import Glibc
import Testing

/// Many workers at once: a start wave is spawned a slice at a time, so the control socket is served
/// in the middle of it and a stop ends it; the files poolvisor holds do not grow with `status`; and
/// open files close to RLIMIT_NOFILE are said in status and the log.
@Suite struct LoadTests {
    static func pool(_ replicas: Int, _ command: String = "[\"/bin/sleep\", \"1000\"]") -> String {
        """
        [pools.many]
        command = \(command)
        replicas = \(replicas)
        ready_after_seconds = 0
        drain_seconds = 5
        """
    }

    @Test func statusIsAnsweredInTheMiddleOfAStartWave() throws {
        let s = try Scenario(Self.pool(3000))
        try s.start()
        #expect(s.supervisor.waitForLine(containing: "control socket:"))
        // Before spawns were sliced, the first answer came only once all 3,000 had been spawned.
        let json = try s.statusJSON()
        let pool = try #require(json.pool("many"))
        let running = try #require(pool["running"] as? Int)
        #expect(running < 3000, "status was answered only after the whole wave")
        #expect(s.waitForWorkers(3000, timeout: .seconds(60)))
        #expect(s.stop() == 0)
    }

    @Test func aStopInTheMiddleOfAStartWaveStartsNoMore() throws {
        let s = try Scenario(Self.pool(3000))
        try s.start()
        #expect(s.supervisor.waitForLine(containing: "worker many/0 started"))
        #expect(s.stop(timeout: .seconds(60)) == 0)
        let started = s.supervisor.allOutput.components(separatedBy: " started, pid ").count - 1
        #expect(started < 3000, "every worker was started before the stop")
        #expect(s.supervisor.allOutput.contains("all workers stopped"))
    }

    @Test func statusHoldsNoFilePerWorker() throws {
        let s = try Scenario(Self.pool(300))
        try s.start()
        #expect(s.waitForWorkers(300, timeout: .seconds(30)))
        for _ in 0..<2 { #expect(try s.control(["status"]).status == 0) }
        let open = try #require(ProcFS.openFileDescriptors(of: s.supervisor.pid)).count
        // One pipe per worker for its output, and a few of poolvisor's own; it was 3 per worker.
        #expect(open <= 300 + 64, "\(open) files open")
        #expect(s.stop() == 0)
    }

    /// Once poolvisor holds a pipe for each of hundreds of workers, workers are spawned by the spawn
    /// server, which holds next to no files (so a worker's exec has none of the supervisor's to
    /// close); if it dies, spawning goes on in the supervisor itself.
    @Test func theSpawnServerHoldsNoWorkerPipesAndLosingItLosesNothing() throws {
        let s = try Scenario(Self.pool(600))
        try s.start()
        #expect(s.waitForWorkers(600, timeout: .seconds(60)))
        let server = try #require(ProcFS.children(of: s.supervisor.pid).first { ProcFS.comm(of: $0) == "poolvisor-spawn" })
        let serverFiles = try #require(ProcFS.openFileDescriptors(of: server))
        #expect(serverFiles.count <= 4, "\(serverFiles)")  // stdio and its socket
        #expect(try #require(ProcFS.openFileDescriptors(of: s.supervisor.pid)).count >= 600)
        let before = try #require(s.worker("many", 7))
        #expect(kill(server, SIGKILL) == 0)
        #expect(kill(before, SIGKILL) == 0)
        #expect(s.supervisor.waitForLine(containing: "the spawn server failed"))
        #expect(waitUntil(timeout: .seconds(15)) { s.worker("many", 7).map { $0 != before } ?? false })
        #expect(s.waitForWorkers(600))
        #expect(s.stop() == 0)
        #expect(!s.supervisor.allOutput.contains("leftover"))
    }

    /// The pools file is parsed in a fork of the spawn server (no exec); once the server is gone, by
    /// an exec of poolvisor itself. Either way a syntax error keeps its position and nothing changes.
    @Test func reloadsParseInAForkOfTheSpawnServerAndWithoutIt() throws {
        let s = try Scenario(Self.pool(2))
        try s.start()
        #expect(s.waitForWorkers(2))
        let workers = Set(s.workers.map(\.pid))
        for serverAlive in [true, false] {
            if !serverAlive {
                let server = try #require(ProcFS.children(of: s.supervisor.pid).first { ProcFS.comm(of: $0) == "poolvisor-spawn" })
                #expect(kill(server, SIGKILL) == 0)
                #expect(waitUntil(timeout: .seconds(15)) { !ProcFS.isAlive(server) })
            }
            s.dir.write("pools.toml", Self.pool(2) + "\n[pools.more\n")
            let refused = try s.control(["reload"])
            #expect(refused.status != 0)
            #expect(refused.allOutput.contains("pools.toml:6:12: error: invalid TOML"), "\(refused.allOutput)")
            s.dir.write("pools.toml", Self.pool(2) + "\n[env]\nX = \"\(serverAlive)\"\n")
            let accepted = try s.control(["reload"])
            #expect(accepted.status == 0, "\(accepted.stdout)")
            #expect(s.waitForWorkers(2))
        }
        // [env] changed: every worker replaced.
        #expect(waitUntil(timeout: .seconds(30)) { s.workers.count == 2 && Set(s.workers.map(\.pid)).isDisjoint(with: workers) })
        #expect(s.supervisor.allOutput.contains("the spawn server failed"))
        #expect(s.stop() == 0)
    }

    @Test func openFilesCloseToTheLimitAreSaidInStatusAndTheLog() throws {
        let s = try Scenario(Self.pool(280))
        try s.start(through: ["/usr/bin/prlimit", "--nofile=320:320", "--"])
        #expect(s.waitForWorkers(280, timeout: .seconds(30)))
        #expect(s.supervisor.waitForLine(containing: "files open of RLIMIT_NOFILE 320: reloads, env files and control clients may fail"))
        let status = try s.control(["status"])
        #expect(status.stdout.contains { $0.hasPrefix("WARNING: ") && $0.contains("files open of RLIMIT_NOFILE 320") })
        let json = try s.statusJSON()
        let warnings = (json["supervisor"] as? [String: Any])?["warnings"] as? [String]
        #expect(warnings?.first?.contains("RLIMIT_NOFILE 320") == true)
        #expect(s.stop() == 0)
    }
}
