import Foundation
import Glibc
import TestServers
import Testing

/// The six queue libraries' examples, run as they are (examples/<library>/pools.toml with shorter
/// windows): the library's real worker under the real binary, its own producer, a real Redis. Every
/// job records in Redis that it started and that it finished, so "exactly once" is counted, not assumed.
@Suite struct QueueLibraryTests {
    /// Shorter than the example's 1 s polling and 10 s windows, so a test takes seconds.
    static let fast = ["polling_interval": "0.5", "cooldown_period": "2", "stabilization_window_seconds": "2"]

    @Test(arguments: QueueLibrary.all)
    func twentyJobsScaleThePoolFromZeroAndEachRunsOnce(_ library: QueueLibrary) throws {
        let redis = try RedisServer.start()
        defer { redis.destroy() }
        let example = try Example(library, redis: redis, changes: Self.fast)
        let s = try example.scenario()
        // Enqueued before poolvisor starts, so the first reading sees all 20 (enqueued into a running
        // pool, a reading could fall between jobs being added and taken).
        try example.enqueue(20, seconds: 1)
        let p = try s.start()
        defer { _ = s.stop(timeout: .seconds(60)) }
        // From min_replicas 0 to ceil(20 / list_length 5) = 4 = max_replicas, in one step.
        #expect(
            p.waitForLine(timeout: .seconds(15)) {
                $0.contains("pool system: autoscaling 0 → 4 replicas (redis \(library.name) ") && $0.hasSuffix(": 20 / 5 per replica → 4)")
            } != nil)
        #expect(waitUntil(timeout: .seconds(30)) { example.workers(s).count == 4 })
        #expect(example.pool(s)["desired"] as? Int == 4)
        #expect(waitUntil(timeout: .seconds(90)) { example.ranOnce(Example.ids("job", 20)) }, "\(example.progress(Example.ids("job", 20)))")

        // The queue is empty: back to zero after the window and the cooldown.
        #expect(waitUntil(timeout: .seconds(60)) { example.workers(s).isEmpty && example.pool(s)["desired"] as? Int == 0 })
        #expect(example.ranOnce(Example.ids("job", 20)))
    }

    @Test(arguments: QueueLibrary.all)
    func theQueueEmptiesAndThePoolShrinksIdleWorkersFirst(_ library: QueueLibrary) throws {
        let redis = try RedisServer.start()
        defer { redis.destroy() }
        let example = try Example(library, redis: redis, changes: Self.fast.merging(["min_replicas": "1", "max_replicas": "3"]) { $1 })
        let s = try example.scenario()
        try s.start()
        defer { _ = s.stop(timeout: .seconds(60)) }
        #expect(waitUntil(timeout: .seconds(60)) { example.pool(s)["ready"] as? Int == 1 })

        // The one worker takes a job that runs until the test lets it finish…
        try example.enqueue(1, seconds: 0, hold: true, prefix: "held")
        #expect(waitUntil(timeout: .seconds(30)) { example.jobs("started")["held-1"] == "1" })
        let heldBy = try #require(example.jobs("pid")["held-1"].flatMap { Int32($0) }.flatMap { example.worker(running: $0, in: s) })
        // …and 14 more bring two more workers (ceil(14 / 5) = 3), which work them off.
        let quick = Example.ids("quick", 14)
        try example.enqueue(14, seconds: 0.3, prefix: "quick")
        #expect(waitUntil(timeout: .seconds(30)) { example.workers(s).count == 3 })

        // Down to min_replicas 1 once 5 or fewer wait (ceil(5 / 5) = 1) for the window: the two idle
        // workers drain, the busy one keeps its job. (A quick job still waiting then, on a slow machine,
        // waits for the held one: one replica is what KEDA's arithmetic asks for.)
        #expect(
            waitUntil(timeout: .seconds(90)) { example.workers(s) == [heldBy] && example.pool(s)["desired"] as? Int == 1 },
            "\(example.workers(s)), \(example.progress(quick))")
        let replica = (example.pool(s)["replicas"] as? [[String: Any]])?.first { $0["pid"] as? Int == Int(heldBy) }
        #expect(replica?["busy"] as? Bool == true)
        #expect(example.jobs("done")["held-1"] == nil)

        // Every job ran once (a job that a draining worker took at the instant of its stop signal may
        // be stranded where the library leaves it: see QueueLibrary.Stranding).
        try example.release()
        #expect(waitUntil(timeout: .seconds(60)) { example.ranOnceOrStranded(quick.union(["held-1"])) }, "\(example.progress(quick))")
        #expect(example.workers(s) == [heldBy])
    }

    @Test(arguments: QueueLibrary.all)
    func aReloadAndAStopWhileJobsRunLoseNoJobAndRunNoneTwice(_ library: QueueLibrary) throws {
        let redis = try RedisServer.start()
        defer { redis.destroy() }
        var example = try Example(library, redis: redis, changes: Self.fast)
        let s = try example.scenario()
        try s.start()

        // A reload that changes the environment while every worker has a job: a rolling replacement,
        // each old worker finishing its job before it goes.
        try example.enqueue(20, seconds: 1.5, prefix: "a")
        #expect(waitUntil(timeout: .seconds(30)) { example.workers(s).count == 4 && example.jobs("started").count >= 4 })
        let before = Set(example.workers(s))
        example.changes["EXAMPLE_GENERATION"] = "\"2\""
        try example.rewrite(s)
        let reload = try s.control(["reload"])
        #expect(reload.status == 0)
        #expect(reload.allOutput.contains("rolling replacement"), "\(reload.allOutput)")
        #expect(waitUntil(timeout: .seconds(120)) { example.ranOnceOrStranded(Example.ids("a", 20)) }, "\(example.progress(Example.ids("a", 20)))")
        #expect(
            waitUntil(timeout: .seconds(30)) {
                let now = s.workers.filter { $0.env["POOLVISOR_POOL"] == "system" }
                return !now.isEmpty && now.allSatisfy { $0.env["EXAMPLE_GENERATION"] == "2" && !before.contains($0.pid) }
            })
        #expect(example.jobs("generation").values.contains("2"))  // the new workers took over

        // SIGTERM to poolvisor while jobs run: each started job finishes, the rest wait in the queue…
        try example.enqueue(20, seconds: 1.5, prefix: "b")
        #expect(waitUntil(timeout: .seconds(30)) { example.jobs("started").keys.filter { $0.hasPrefix("b-") }.count >= 2 })
        #expect(s.stop(timeout: .seconds(60)) == 0)
        let started = example.jobs("started").filter { $0.key.hasPrefix("b-") }
        let done = example.jobs("done").filter { $0.key.hasPrefix("b-") }
        #expect(Set(started.keys) == Set(done.keys), "started: \(started), done: \(done)")
        #expect(started.values.allSatisfy { $0 == "1" })
        #expect(started.count < 20)

        // …and run, once each, when poolvisor is back.
        try s.start()
        defer { _ = s.stop(timeout: .seconds(60)) }
        #expect(waitUntil(timeout: .seconds(120)) { example.ranOnceOrStranded(Example.ids("b", 20)) }, "\(example.progress(Example.ids("b", 20)))")
        // Whatever did not run is where the library strands a job taken at the instant of a stop signal.
        let all = Example.ids("a", 20).union(Example.ids("b", 20))
        #expect(waitUntil(timeout: .seconds(30)) { example.ranOnceOrStranded(all) }, "\(example.progress(all))")
    }

    @Test(arguments: QueueLibrary.all)
    func delayedJobsCountOnlyWhenCountAsksForThem(_ library: QueueLibrary) throws {
        let redis = try RedisServer.start()
        defer { redis.destroy() }
        // Below the activation value nothing starts, so the readings are the whole queue.
        let example = try Example(library, redis: redis, changes: Self.fast.merging(["activation_list_length": "5"]) { $1 })
        let s = try example.scenario()
        // The example has no `count` line (it reads "ready", the default): this adds one for the reload.
        func countingDelayed() throws {
            s.dir.write(
                "pools.toml",
                try example.poolsFile().replacingOccurrences(
                    of: "[pools.system.autoscaling.keda]\n", with: "[pools.system.autoscaling.keda]\ncount = \"ready+delayed\"\n"))
        }
        try s.start()
        defer { _ = s.stop(timeout: .seconds(60)) }
        #expect(waitUntil(timeout: .seconds(15)) { example.trigger(s)["value"] as? Double == 0 })

        try example.enqueue(3, prefix: "now")
        try example.enqueue(10, delay: 3600, prefix: "later")
        switch library.delayed {
        case .apart:
            // 3 ready, 10 for later: "ready" counts 3…
            #expect(waitUntil(timeout: .seconds(15)) { example.trigger(s)["value"] as? Double == 3 })
            #expect(example.workers(s).isEmpty)
            // …and "ready+delayed" all 13 (or 10, once a worker has taken the 3).
            try countingDelayed()
            let reload = try s.control(["reload"])
            #expect(reload.status == 0, "\(reload.allOutput)")
            #expect(waitUntil(timeout: .seconds(15)) { (example.trigger(s)["value"] as? Double ?? 0) >= 10 })
        case .withTheReady, .outsideTheQueue:
            // Celery: a countdown task waits in the list like any other. TaskIQ: the scheduler keeps it.
            let expected: Double = library.delayed == .withTheReady ? 13 : 3
            #expect(waitUntil(timeout: .seconds(15)) { example.trigger(s)["value"] as? Double == expected })
            try countingDelayed()
            let reload = try s.control(["reload"])
            #expect(reload.status == 1)
            #expect(reload.allOutput.contains("cannot be counted for \(library.name)"), "\(reload.allOutput)")
        }
    }
}
