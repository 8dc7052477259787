import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// `JobRunState.decide`, pair by pair.
@Suite struct JobRunMachineTests {
    static let t0 = Instant(nanoseconds: 1_000_000_000)
    static let later = t0 + .seconds(10)
    static let failed = JobRunEnd.failed("x")

    static let states: [(String, JobRunState)] = [
        ("pending", .pending(attempt: 2)), ("active", .active(pid: 7, attempt: 2)), ("backOff", .backOff(until: later, attempt: 2)),
        ("stopping", .stopping(pid: 7, deadline: later, end: failed)), ("killing", .killing(pid: 7, end: failed)), ("ended", .ended(.succeeded)),
    ]
    static let events: [(String, JobRunEvent)] = [
        ("spawned", .spawned(pid: 9)), ("spawnFailed", .spawnFailed("ENOENT", retryAt: later)), ("spawnFailedLast", .spawnFailed("ENOENT", retryAt: nil)),
        ("exited0", .exited(.exited(0), retryAt: nil)), ("exited1", .exited(.exited(1), retryAt: later)), ("exited1Last", .exited(.exited(1), retryAt: nil)),
        ("backoffOver", .backoffOver), ("stop", .stop(failed, signal: .terminate, deadline: later)), ("stopNow", .stop(failed, signal: .terminate, deadline: nil)),
        ("drainDeadline", .drainDeadline),
    ]

    static let ignore = JobRunStep.ignore
    static func to(_ s: JobRunState, _ o: JobRunOrder...) -> JobRunStep { JobRunStep(next: s, orders: o) }

    static func all(_ state: String, _ step: JobRunStep, except: [String: JobRunStep]) -> [String: JobRunStep] {
        var out: [String: JobRunStep] = [:]
        for (e, _) in events { out["\(state)/\(e)"] = except[e] ?? step }
        return out
    }

    static let expected: [String: JobRunStep] = [String: JobRunStep]()
        .merging(
            all(
                "pending", ignore,
                except: [
                    "spawned": to(.active(pid: 9, attempt: 2)),
                    "spawnFailed": to(.backOff(until: later, attempt: 2), .armBackoff),
                    "spawnFailedLast": to(.ended(.failed("spawn failed: ENOENT (attempt 2)"))),
                    "stop": to(.ended(failed)), "stopNow": to(.ended(failed)),
                ])
        ) { a, _ in a }
        .merging(
            all(
                "active", ignore,
                except: [
                    "exited0": to(.ended(.succeeded)),
                    "exited1": to(.backOff(until: later, attempt: 2), .armBackoff),
                    "exited1Last": to(.ended(.failed("exit code 1 (attempt 2, backoff_limit reached)"))),
                    "stop": to(.stopping(pid: 7, deadline: later, end: failed), .startDrain(.terminate)),
                    "stopNow": to(.killing(pid: 7, end: failed), .kill),
                ])
        ) { a, _ in a }
        .merging(
            all("backOff", ignore, except: ["backoffOver": to(.pending(attempt: 3), .spawn), "stop": to(.ended(failed)), "stopNow": to(.ended(failed))])
        ) { a, _ in a }
        .merging(
            all(
                "stopping", ignore,
                except: [
                    "drainDeadline": to(.killing(pid: 7, end: failed), .kill), "exited0": to(.ended(.succeeded)), "exited1": to(.ended(failed)),
                    "exited1Last": to(.ended(failed)),
                ])
        ) { a, _ in a }
        .merging(
            all("killing", ignore, except: ["exited0": to(.ended(.succeeded)), "exited1": to(.ended(failed)), "exited1Last": to(.ended(failed))])
        ) { a, _ in a }
        .merging(all("ended", ignore, except: [:])) { a, _ in a }

    @Test func everyPairIsDecidedAsTheTableSays() {
        checkEveryPair(Self.states, Self.events, Self.expected, JobRunState.decide)
    }
}

/// Jobs in the reconciler, against a fake clock and a fake wall clock.
@Suite struct JobTests {
    static func job(_ name: String, _ configure: (inout JobSpec) -> Void = { _ in }) -> JobSpec {
        var spec = JobSpec(name: name, command: ["/bin/true"])
        configure(&spec)
        return spec
    }

    static func world(_ pools: [PoolSpec], jobs: [JobSpec], supervisor: SupervisorSpec = SupervisorSpec()) -> SimulatedWorld {
        let world = SimulatedWorld(pools, supervisor: supervisor)
        world.reconciler = Reconciler(
            file: PoolsFile(path: "pools.toml", supervisor: supervisor, pools: pools, jobs: jobs), notifyDirectory: "/run/test/notify", seed: 42)
        return world
    }

    static func dependent(_ name: String, on dependencies: [String], replicas: Int = 2) -> PoolSpec {
        var p = pool(name, replicas: replicas)
        p.dependsOn = dependencies
        return p
    }

    func jobPid(_ world: SimulatedWorld, _ name: String) -> Int32? {
        world.reconciler.job(named: name)?.runs.first?.state.pid
    }

    @Test func aMigrationRunsOnceBeforeItsPoolStarts() throws {
        let world = Self.world([Self.dependent("api", on: ["migrate"]), pool("other")], jobs: [Self.job("migrate")])
        world.send(.start)
        #expect(world.spawns.map(\.replica.pool) == ["migrate", "other"])  // the pool without depends_on does not wait
        let launch = try #require(world.spawns.first)
        #expect(launch.environment["POOLVISOR_JOB"] == "migrate")
        #expect(launch.environment["POOLVISOR_JOB_RUN"] == "1")
        #expect(launch.environment["POOLVISOR_POOL"] == nil)
        #expect(world.reconciler.pool(named: "api")?.held == "waiting for job migrate")
        #expect(world.reconciler.statusLine.contains("api waiting for job migrate"))
        world.advance(by: 5)
        #expect(!world.systemd.contains(.ready))

        let pid = try #require(jobPid(world, "migrate"))
        world.alive[pid] = nil
        world.send(.exited(pid: pid, .exited(0)))
        #expect(world.reconciler.job(named: "migrate")?.last?.state == .ended(.succeeded))
        #expect(world.spawns.filter { $0.replica.pool == "api" }.count == 2)
        #expect(world.reconciler.pool(named: "api")?.held == nil)
        world.advance(by: 1)
        #expect(world.systemd == [.ready])
        #expect(world.spawns.filter { $0.replica.pool == "migrate" }.count == 1)  // once
        #expect(world.logText.contains("job migrate: run 1 succeeded"))
    }

    @Test func aJobThatFailsForGoodKeepsItsPoolDownAndReadyUnsent() throws {
        let world = Self.world(
            [Self.dependent("api", on: ["migrate"])], jobs: [Self.job("migrate") { $0.backoffLimit = 2 }],
            supervisor: {
                var s = SupervisorSpec(); s.readyTimeout = .seconds(120); return s
            }())
        world.send(.start)
        for (attempt, delay) in [(1, 10.0), (2, 20.0)] {
            let pid = try #require(jobPid(world, "migrate"))
            world.alive[pid] = nil
            world.send(.exited(pid: pid, .exited(3)))
            #expect(world.logText.contains("job migrate: run 1 attempt \(attempt) failed (exit code 3); retrying in \(Int(delay)) s"))
            world.advance(by: delay - 0.001)
            #expect(jobPid(world, "migrate") == nil)
            world.advance(by: 0.001)
        }
        let pid = try #require(jobPid(world, "migrate"))
        world.alive[pid] = nil
        world.send(.exited(pid: pid, .exited(3)))
        let why = "exit code 3 (attempt 3, backoff_limit reached)"
        #expect(world.reconciler.job(named: "migrate")?.failed == why)
        #expect(world.reconciler.pool(named: "api")?.held == "job migrate failed: \(why)")
        #expect(world.logText.contains("pool api will not start: job migrate failed (poolvisor run-job migrate to try again)"))
        world.advance(by: 200)  // past ready_timeout_seconds
        #expect(!world.systemd.contains(.ready))
        #expect(world.logText.contains("not telling systemd READY=1: api cannot start (job migrate failed: \(why))"))
        #expect(world.spawns.allSatisfy { $0.replica.pool == "migrate" })

        // run-job tries again; this time it succeeds and the pool starts.
        #expect(world.perform(.runJob("migrate")).accepted)
        let again = try #require(jobPid(world, "migrate"))
        world.alive[again] = nil
        world.send(.exited(pid: again, .exited(0)))
        #expect(world.spawns.filter { $0.replica.pool == "api" }.count == 2)
    }

    @Test func activeDeadlineStopsTheRunAndItFails() throws {
        let world = Self.world(
            [],
            jobs: [
                Self.job("report") {
                    $0.activeDeadline = .seconds(60); $0.drain = .seconds(5)
                }
            ])
        world.send(.start)
        let pid = try #require(jobPid(world, "report"))
        world.advance(by: 60)
        #expect(world.signals.map(\.signal) == [.terminate])
        world.advance(by: 5)
        #expect(world.signals.map(\.signal) == [.terminate, .kill])
        world.alive[pid] = nil
        world.send(.exited(pid: pid, .signaled(.kill, coreDumped: false)))
        #expect(world.reconciler.job(named: "report")?.failed == "active_deadline_seconds (60 s) exceeded")
    }

    @Test func aScheduledJobRunsOnItsMinuteAndForbidSkipsWhileOneRuns() throws {
        let cron = try CronSchedule.parse("*/15 * * * *").get()
        let world = Self.world([], jobs: [Self.job("sweep") { $0.schedule = JobSchedule(cron: cron) }])
        world.wallClockStart = CivilTime(year: 2026, month: 12, day: 3, hour: 9, minute: 1)!
        world.send(.start)
        #expect(world.spawns.isEmpty)
        #expect(world.reconciler.job(named: "sweep")?.nextScheduled?.description == "2026-12-03 09:15")
        world.advance(by: 14 * 60 - 0.1)
        #expect(world.spawns.isEmpty)
        world.advance(by: 0.2)
        #expect(world.spawns.count == 1)
        #expect(world.logText.contains("job sweep: run 1 starting (schedule 2026-12-03 09:15)"))
        // Still running at 09:30: Forbid skips that run.
        world.advance(by: 15 * 60)
        #expect(world.spawns.count == 1)
        #expect(world.logText.contains("skipped the scheduled run at 2026-12-03 09:30: job sweep is already running"))
        // Idle cost: between runs it wakes at most for the next minute it fires on (or hourly).
        let next = try #require(world.reconciler.nextDeadline)
        #expect(next.since(world.now) <= .seconds(15 * 60 + 1))
    }

    @Test func replaceStopsTheRunUnderWayAndAllowRunsBeside() throws {
        let cron = try CronSchedule.parse("* * * * *").get()
        let world = Self.world(
            [],
            jobs: [
                Self.job("replace") { $0.schedule = JobSchedule(cron: cron, concurrency: .replace) },
                Self.job("allow") { $0.schedule = JobSchedule(cron: cron, concurrency: .allow) },
            ])
        world.send(.start)
        #expect(world.spawns.map(\.replica.pool).sorted() == ["allow", "replace"])
        let first = try #require(jobPid(world, "replace"))
        world.advance(by: 60.1)  // just past the next minute's start
        #expect(world.signals.contains { $0.group == first && $0.signal == .terminate })
        #expect(world.reconciler.job(named: "allow")?.runs.count == 2)
        #expect(world.reconciler.job(named: "replace")?.runs.count == 2)  // the old one stopping, the new one started
    }

    @Test func runJobIsRefusedWhileOneRunsUnderForbidAndForAnUnknownJob() throws {
        let world = Self.world([], jobs: [Self.job("migrate")])
        world.send(.start)
        let refused = world.perform(.runJob("migrate"))
        #expect(!refused.accepted)
        #expect(refused.lines.first?.hasPrefix("job migrate is already running (run 1, pid ") == true)
        let unknown = world.perform(.runJob("migrat"))
        #expect(unknown.lines == ["no job 'migrat'; did you mean 'migrate'?"])
    }

    @Test func reloadAddsChangesAndRemovesJobsWithoutTouchingPools() throws {
        let world = Self.world([pool("api")], jobs: [Self.job("old"), Self.job("migrate")])
        world.send(.start)
        world.advance(by: 2)
        let api = try #require(world.state("api", 0)?.worker?.pid)
        for name in ["old", "migrate"] {
            let pid = try #require(jobPid(world, name))
            world.alive[pid] = nil
            world.send(.exited(pid: pid, .exited(0)))
        }
        var changed = Self.job("migrate")
        changed.template.command = ["/bin/true", "v2"]
        let file = PoolsFile(path: "pools.toml", supervisor: SupervisorSpec(), pools: [pool("api")], jobs: [changed, Self.job("seed")])
        let outcome = world.perform(.reload(PoolsFileReading(file: file, diagnostics: [])))
        #expect(outcome.lines.contains("job migrate: changed, running it again"))
        #expect(outcome.lines.contains("job seed: new, running it"))
        #expect(outcome.lines.contains("job old: removed"))
        #expect(world.reconciler.job(named: "old") == nil)
        #expect(world.state("api", 0)?.worker?.pid == api)
        #expect(world.spawns.suffix(2).map(\.arguments) == [["/bin/true", "v2"], ["/bin/true"]])
    }

    @Test func stoppingDrainsRunningJobsAndWaitsForThem() throws {
        let world = Self.world([], jobs: [Self.job("long") { $0.drain = .seconds(10) }])
        world.send(.start)
        let pid = try #require(jobPid(world, "long"))
        world.send(.stopRequested(.terminate))
        #expect(world.signals.map(\.signal) == [.terminate])
        #expect(world.exitCode == nil)
        world.alive[pid] = nil
        world.send(.exited(pid: pid, .signaled(.terminate, coreDumped: false)))
        #expect(world.exitCode == 0)
    }

    @Test func aPoolCanWaitForAnotherPoolToBeReady() throws {
        let world = Self.world([Self.dependent("web", on: ["db"], replicas: 1), pool("db", replicas: 2)], jobs: [])
        world.send(.start)
        #expect(world.spawns.map(\.replica.pool) == ["db", "db"])
        world.advance(by: 1)
        #expect(world.spawns.map(\.replica.pool) == ["db", "db", "web"])
    }

    @Test func nextMinuteOfASchedule() throws {
        let t = CivilTime(year: 2026, month: 12, day: 31, hour: 23, minute: 59)!
        #expect(try CronSchedule.parse("0 0 1 1 *").get().next(after: t)?.description == "2027-01-01 00:00")
        #expect(try CronSchedule.parse("*/15 * * * *").get().next(after: t)?.description == "2027-01-01 00:00")
        #expect(try CronSchedule.parse("30 9 * * 1").get().next(after: t)?.description == "2027-01-04 09:30")  // a Monday
        #expect(try CronSchedule.parse("0 0 29 2 *").get().next(after: t)?.description == "2028-02-29 00:00")
    }
}

/// Found by the fuzzer: a document whose pools table names a pool twice (TOML refuses that, a
/// hostile or broken document need not) crashed the depends_on circle check.
@Test func aPoolNamedTwiceInADocumentIsNoCrash() {
    let pool = table(["command": strings("/bin/sleep", "1"), "depends_on": strings("b")])
    let root = ConfigTable([
        ("pools", .table(ConfigTable([("a", pool), ("a", pool), ("b", table(["command": strings("/bin/sleep", "1")]))])))
    ])
    let result = decode("[pools.a]\n[pools.a]\n[pools.b]\n", root)
    #expect(result.file == nil || result.file?.pools.filter { $0.name == "a" }.count ?? 0 >= 1)
}
