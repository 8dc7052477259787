import PoolvisorConfig
import PoolvisorControl
import Testing

@testable import PoolvisorCore

/// Which keys each library's depth is read from, and the depth from Redis' replies.
@Suite struct RedisQueueTests {
    let now: Int64 = 1_700_000_000_000

    @Test func arqCountsJobsDueNowWithTheRunningOnesAndZCARDForDelayed() {
        let ready = RedisQueue(library: .arq, name: "arq:queue:system")
        #expect(ready.commands(nowMilliseconds: now) == [["ZCOUNT", "arq:queue:system", "-inf", String(now)]])
        #expect(ready.keys.first?.holds.contains("running ones included") == true)
        let all = RedisQueue(library: .arq, name: "arq:queue:system", count: .readyAndDelayed)
        #expect(all.commands(nowMilliseconds: now) == [["ZCARD", "arq:queue:system"]])
        #expect(ready.depth([.integer(7)]) == .success(7))
    }

    @Test func bullmqCountsWaitingPrioritizedAndDueDelayedJobsUnlessPaused() {
        let q = RedisQueue(library: .bullmq, name: "system")
        #expect(
            q.commands(nowMilliseconds: now) == [
                ["LLEN", "bull:system:wait"], ["ZCARD", "bull:system:prioritized"],
                ["ZCOUNT", "bull:system:delayed", "0", String((now + 1) * 4096 - 1)],
                ["HEXISTS", "bull:system:meta", "paused"],
            ])
        #expect(q.depth([.integer(3), .integer(2), .integer(1), .integer(0)]) == .success(6))
        // Paused: workers take nothing, so nothing waiting needs a worker.
        #expect(q.depth([.integer(3), .integer(2), .integer(1), .integer(1)]) == .success(0))

        let inFlight = RedisQueue(library: .bullmq, name: "system", keyPrefix: "jobs", count: .readyAndInFlight)
        #expect(
            inFlight.commands(nowMilliseconds: now).map { $0[1] } == [
                "jobs:system:wait", "jobs:system:prioritized", "jobs:system:delayed", "jobs:system:active", "jobs:system:meta",
            ])
        // Paused, the active jobs still run and still count.
        #expect(inFlight.depth([.integer(3), .integer(0), .integer(0), .integer(2), .integer(1)]) == .success(2))

        let delayed = RedisQueue(library: .bullmq, name: "system", count: .readyAndDelayed)
        #expect(delayed.commands(nowMilliseconds: now)[2] == ["ZCARD", "bull:system:delayed"])
    }

    @Test func listsOfTheOtherLibraries() {
        let celery = RedisQueue(library: .celery, name: "system")
        #expect(
            celery.commands(nowMilliseconds: now) == [
                ["LLEN", "system"], ["LLEN", "system\u{06}\u{16}3"],
                ["LLEN", "system\u{06}\u{16}6"], ["LLEN", "system\u{06}\u{16}9"],
            ])
        #expect(celery.keys[1].description == "system\\x06\\x163 (list, ready jobs with priority 3–5)")
        #expect(celery.depth([.integer(1), .integer(2), .integer(0), .integer(4)]) == .success(7))
        #expect(
            RedisQueue(library: .dramatiq, name: "system", count: .readyAndDelayed).commands(nowMilliseconds: now)
                == [["LLEN", "dramatiq:system"], ["HLEN", "dramatiq:system.DQ.msgs"]])
        #expect(
            RedisQueue(library: .dramatiq, name: "system", keyPrefix: "app", count: .readyAndInFlight).commands(nowMilliseconds: now)
                == [["HLEN", "app:system.msgs"]])
        #expect(
            RedisQueue(library: .rq, name: "system").commands(nowMilliseconds: now)
                == [["LLEN", "rq:queue:system"], ["ZCOUNT", "rq:scheduled:system", "-inf", "1700000000"]])
        #expect(
            RedisQueue(library: .rq, name: "system", count: .readyAndDelayed).commands(nowMilliseconds: now)
                == [["LLEN", "rq:queue:system"], ["ZCARD", "rq:scheduled:system"]])
        #expect(
            RedisQueue(library: .rq, name: "system", count: .readyAndInFlight).commands(nowMilliseconds: now)
                == [["LLEN", "rq:queue:system"], ["ZCOUNT", "rq:scheduled:system", "-inf", "1700000000"], ["ZCARD", "rq:wip:system"]])
    }

    @Test func aKeyOfTheWrongTypeIsAnErrorNamingItNotAZero() {
        let q = RedisQueue(library: .bullmq, name: "system")
        let result = q.depth([.error("WRONGTYPE Operation against a key holding the wrong kind of value"), .integer(0), .integer(0), .integer(0)])
        guard case .failure(let error) = result else {
            Issue.record("expected an error, got \(result)")
            return
        }
        #expect(error.description.contains("key 'bull:system:wait' is not a list"))
        #expect(q.depth([.integer(1)]) != .success(1))  // a short reply is not a depth
    }

    @Test func taskiqReadsTheGroupsLagAndTheStreamBeforeTheGroupExists() {
        let q = RedisQueue(library: .taskiq, name: "system")
        #expect(q.commands(nowMilliseconds: now) == [["XINFO", "GROUPS", "system"], ["XLEN", "system"]])
        let group: RedisValue = .array([.array([.string("name"), .string("taskiq"), .string("lag"), .integer(4), .string("pending"), .integer(2)])])
        #expect(q.depth([group, .integer(40)]) == .success(4))
        #expect(RedisQueue(library: .taskiq, name: "system", count: .readyAndInFlight).depth([group, .integer(40)]) == .success(6))
        #expect(q.depth([.array([]), .integer(5)]) == .success(5))
    }
}
