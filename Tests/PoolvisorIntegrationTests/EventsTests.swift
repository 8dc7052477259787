import Foundation
import Glibc
import Testing

/// `poolvisor events` against a running supervisor.
@Suite struct EventsTests {
    @Test func aCrashItsRestartAndAReloadInOrderAsTextAndJSON() throws {
        let s = try Scenario(
            """
            [pools.web]
            command = ["/bin/sleep", "1000"]
            ready_after_seconds = 0.1
            """)
        _ = try s.start()
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("web")?["ready"] as? Int == 1 })
        let victim = try #require(s.worker("web", 0))
        kill(victim, SIGKILL)
        #expect(waitUntil(timeout: .seconds(15)) { s.worker("web", 0).map { $0 != victim } ?? false })
        // The new worker's worker.ready comes before the reload, so that the reload is the last event.
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("web")?["ready"] as? Int == 1 })
        #expect(try s.control(["reload"]).status == 0)

        let run = try s.control(["events", "--json"])
        #expect(run.status == 0, "\(run.allOutput)")
        let events = run.stdout.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let types = events.compactMap { $0["type"] as? String }
        let crash = try #require(types.firstIndex(of: "worker.stopped"))
        #expect(Array(types[crash...].prefix(3)) == ["worker.stopped", "worker.restarting", "worker.started"])
        #expect(types.last == "reload.applied")
        let stopped = events[crash]
        #expect(stopped["pool"] as? String == "web")
        #expect(stopped["replica"] as? Int == 0)
        #expect(stopped["pid"] as? Int == Int(victim))
        #expect(stopped["detail"] as? String == "killed by SIGKILL")
        #expect((stopped["time"] as? String)?.hasSuffix("Z") == true)
        let seqs = events.compactMap { $0["seq"] as? Int }
        #expect(seqs == seqs.sorted() && Set(seqs).count == seqs.count)

        let text = try s.control(["events", "--since", "10m", "web"]).stdout
        #expect(text.contains { $0.contains(" worker.stopped web/0 pid \(victim): killed by SIGKILL") }, "\(text)")
        #expect(!text.contains { $0.contains("reload.applied") })  // not a web event
        #expect(s.stop() == 0)
    }

    @Test func followSeesACrashItsRestartAndAReloadInOrder() throws {
        let s = try Scenario(
            """
            [pools.web]
            command = ["/bin/sleep", "1000"]
            ready_after_seconds = 0.1
            """)
        _ = try s.start()
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("web")?["ready"] as? Int == 1 })
        let follower = try PoolvisorProcess(arguments: ["events", "--follow", "--json", "--since", "1h", "--socket", s.controlSocket])
        defer { follower.terminate() }
        // The snapshot comes first, once the follower is registered: new events follow it.
        #expect(follower.waitForLine(timeout: .seconds(10)) { $0.contains("\"type\":\"supervisor.ready\"") } != nil)
        let snapshot = follower.stdoutLines.count
        let victim = try #require(s.worker("web", 0))
        kill(victim, SIGKILL)
        #expect(waitUntil(timeout: .seconds(15)) { follower.stdoutLines.dropFirst(snapshot).contains { $0.contains("\"type\":\"worker.ready\"") } })
        #expect(try s.control(["reload"]).status == 0)
        #expect(follower.waitForLine(timeout: .seconds(15)) { $0.contains("\"type\":\"reload.applied\"") } != nil)
        let types = follower.stdoutLines.dropFirst(snapshot).compactMap { line -> String? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return o["type"] as? String
        }
        #expect(types == ["worker.stopped", "worker.restarting", "worker.started", "worker.ready", "reload.applied"], "\(follower.stdoutLines)")
        // poolvisor stops: the follower's stream ends and the command exits 0.
        #expect(s.stop() == 0)
        #expect(follower.waitForExit(timeout: .seconds(10)) == 0)
    }
}
