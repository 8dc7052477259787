import Foundation
import Glibc
import Testing

/// Jobs with real processes: a migration before its pool, one that fails, one on its minute.
@Suite struct JobIntegrationTests {
    static func job(_ s: Scenario, _ name: String) -> [String: Any]? {
        ((try? s.statusJSON())?["jobs"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }

    @Test func aMigrationRunsOnceBeforeItsPoolStarts() throws {
        let s = try Scenario(
            """
            [jobs.migrate]
            command = ["/bin/sh", "-c", "echo migrating; sleep 0.5; echo \\"$POOLVISOR_JOB run $POOLVISOR_JOB_RUN\\" >> @DIR@/migrations; date +%s.%N > @DIR@/migrated-at"]
            [pools.api]
            command = ["/bin/sh", "-c", "date +%s.%N > @DIR@/api-started-at; exec sleep 1000"]
            replicas = 2
            depends_on = ["migrate"]
            ready_after_seconds = 0.2
            """)
        let p = try s.start()
        #expect(p.waitForLine(containing: "migrate.1 | migrating"))
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("api")?["ready"] as? Int == 2 })
        #expect(s.dir.read("migrations") == "migrate run 1\n")
        let migrated = try #require(s.dir.read("migrated-at").flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        let started = try #require(s.dir.read("api-started-at").flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        #expect(started >= migrated)
        let job = try #require(Self.job(s, "migrate"))
        #expect(job["state"] as? String == "Succeeded")
        #expect(job["result"] as? String == "succeeded")
        #expect(p.waitForLine(containing: "job migrate: run 1 succeeded"))
        let table = try s.control(["status"]).stdout.joined(separator: "\n")
        #expect(table.contains("JOBS"), "\(table)")
        #expect(table.contains("migrate  Succeeded"), "\(table)")
        #expect(s.stop() == 0)
        #expect(s.dir.read("migrations") == "migrate run 1\n")  // once
    }

    @Test func aFailingJobKeepsItsPoolDownAndSaysWhy() throws {
        let s = try Scenario(
            """
            [jobs.migrate]
            command = ["/bin/sh", "-c", "echo 'relation users already exists' >&2; test -e @DIR@/fixed"]
            backoff_limit = 1
            [jobs.migrate.backoff]
            initial_seconds = 0.2
            [pools.api]
            command = ["/bin/sleep", "1000"]
            depends_on = ["migrate"]
            """)
        let p = try s.start()
        let why = "job migrate failed: exit code 1 (attempt 2, backoff_limit reached)"
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("api")?["waiting"] as? String == why })
        #expect((try s.statusJSON()).pool("api")?["state"] as? String == "Waiting")
        #expect(Self.job(s, "migrate")?["state"] as? String == "Failed")
        #expect(s.workers.isEmpty)
        #expect(p.waitForLine(containing: "pool api will not start: job migrate failed (poolvisor run-job migrate to try again)"))
        #expect(p.waitForLine(containing: "migrate.1 | relation users already exists"))
        let table = try s.control(["status"]).stdout.joined(separator: "\n")
        #expect(table.contains("waiting: \(why)"), "\(table)")

        // Fixed: run-job runs it again, and the pool starts.
        s.dir.write("fixed", "")
        let run = try s.control(["run-job", "migrate"])
        #expect(run.status == 0, "\(run.allOutput)")
        #expect(run.stdout.contains("job migrate: run 2 started"))
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("api")?["ready"] as? Int == 1 })
        #expect(s.stop() == 0)
    }

    @Test func aScheduledJobRunsOnItsMinute() throws {
        // The next minute on the wall clock (the one after, if this one is nearly over).
        var now = time(nil)
        if now % 60 > 50 { now += 60 }
        var tm = tm()
        gmtime_r(&now, &tm)
        let minute = (Int(tm.tm_min) + 1) % 60
        let s = try Scenario(
            """
            [jobs.tick]
            command = ["/bin/sh", "-c", "date -u +%M:%S >> @DIR@/ticks"]
            schedule = "\(minute) * * * *"
            timezone = "UTC"
            [pools.idle]
            command = ["/bin/sleep", "1000"]
            """)
        _ = try s.start()
        #expect(waitUntil(timeout: .seconds(5)) { Self.job(s, "tick")?["state"] as? String == "Scheduled" })
        #expect(s.dir.read("ticks") == nil)  // not at the start: on its minute
        #expect(waitUntil(timeout: .seconds(75)) { s.dir.read("ticks") != nil })
        let tick = try #require(s.dir.read("ticks")?.split(separator: "\n").first.map(String.init))
        let parts = tick.split(separator: ":").compactMap { Int($0) }
        #expect(parts.first == minute, "ran at \(tick)")
        #expect((parts.last ?? 99) <= 2, "ran at \(tick)")
        #expect(waitUntil(timeout: .seconds(5)) { Self.job(s, "tick")?["result"] as? String == "succeeded" })
        #expect(s.stop() == 0)
    }

    @Test func checkNamesEveryJobMistakeWithFileLineAndKey() throws {
        let dir = try TempDir()
        let config = dir.write(
            "pools.toml",
            """
            [jobs.migrate]
            command = ["/bin/true"]
            backoff_limit = -1
            schedule = "61 * * * *"
            concurrency_policy = "Sometimes"
            [jobs.report]
            command = ["/bin/true"]
            schedule = "0 3 * * *"
            [jobs.nightly]
            command = ["/bin/true"]
            schedule = "0 3 * * *"
            timezone = "Mars/Olympus"
            [jobs.api]
            command = ["/bin/true"]
            [pools.api]
            command = ["/bin/sleep", "1000"]
            depends_on = ["report", "migrat", "api"]
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 1)
        let expected: [(Int, String)] = [
            (3, "'jobs.migrate.backoff_limit' must be between 0 and 1000, not -1"),
            (4, "'jobs.migrate.schedule' is not a cron expression"),
            (5, "'jobs.migrate.concurrency_policy' must be one of 'Allow', 'Forbid', 'Replace', not 'Sometimes'"),
            (12, "'jobs.nightly.timezone': unknown time zone 'Mars/Olympus'"),
            (13, "'jobs.api': a pool has that name too"),
            (17, "'pools.api.depends_on': job report runs on a schedule"),
            (17, "'pools.api.depends_on' names 'migrat', which is no job or pool of this file; did you mean 'migrate'?"),
            (17, "'pools.api.depends_on': pool api cannot depend on itself"),
        ]
        for (line, message) in expected {
            #expect(
                run.stderr.contains { $0.hasPrefix("\(config):\(line):") && $0.contains(": error: " + message) },
                "missing: \(line): \(message)\n\(run.stderr.joined(separator: "\n"))")
        }
    }
}
