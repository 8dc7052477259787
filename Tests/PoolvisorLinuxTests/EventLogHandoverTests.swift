import Foundation
import PoolvisorCore
import Testing

@testable import PoolvisorDaemon

/// The event ring as an upgrade hands it over: one text of lines, read back entry for entry.
@Suite struct EventLogHandoverTests {
    func roundTrip(_ log: EventLog) throws -> EventLog {
        try #require(EventLog(handoverBytes: log.handoverBytes()[...]))
    }

    func rows(_ log: EventLog) -> [String] {
        log.entries(since: nil, pool: nil).map { e in
            "\(e.seq) \(e.time) \(e.event.kind.rawValue) \(e.event.at.nanoseconds) \(String(describing: e.event.pool)) \(String(describing: e.event.replica)) \(String(describing: e.event.pid)) \(String(describing: e.event.detail))"
        }
    }

    @Test func everyFieldComesBackIncludingTabsNewlinesBackslashesAndEmptyTexts() throws {
        var log = EventLog()
        log.append(LifecycleEvent(.supervisorStarting, at: Instant(nanoseconds: 1), detail: "pools.toml"), time: 1_796_303_262.888631)
        log.append(LifecycleEvent(.workerStopped, at: Instant(nanoseconds: 2), pool: "kb", replica: 3, pid: 4242, detail: "exit code 1"), time: 2.5)
        log.append(
            LifecycleEvent(.reloadRefused, at: Instant(nanoseconds: .max), detail: "line 1\tcol\\umn\nline 2 \\t not a tab; ünïcödé +"), time: 0.1)
        log.append(LifecycleEvent(.poolScaled, at: .zero, pool: "", replica: 0, pid: -1, detail: ""), time: 1e-9)
        log.append(LifecycleEvent(.supervisorReady, at: Instant(nanoseconds: 5)), time: 3)
        let back = try roundTrip(log)
        #expect(rows(back) == rows(log))
        #expect(back.recorded == 5)
    }

    @Test func aFullRingComesBackOldestFirstAndGoesOnWrapping() throws {
        var log = EventLog()
        for i in 0..<(EventLog.capacity + 123) {
            log.append(LifecycleEvent(.workerStarted, at: Instant(nanoseconds: UInt64(i)), pool: "p", replica: i % 7, pid: Int32(i)), time: Double(i))
        }
        var back = try roundTrip(log)
        #expect(rows(back) == rows(log))
        #expect(back.entries(since: nil, pool: nil).first?.seq == 124)
        // Appending after the handover drops the oldest, as before it.
        log.append(LifecycleEvent(.workerReady, at: .zero), time: 1)
        back.append(LifecycleEvent(.workerReady, at: .zero), time: 1)
        #expect(rows(back) == rows(log))
        #expect(back.last?.seq == UInt64(EventLog.capacity + 124))
    }

    @Test func aLineThatDoesNotReadIsLeftOutAndTheRestStays() throws {
        #expect(EventLog(handoverBytes: Array("not a count\n".utf8)[...]) == nil)
        let text = "3\n1\t1.5\tworker.started\t7\t+kb\t0\t11\t\n2\t1.6\tworker.teleported\t8\t+kb\t0\t11\t\n3\tnot a time\n4\t2\tworker.ready\t9\t+kb\t0\t11\t+ok\n"
        let log = try #require(EventLog(handoverBytes: Array(text.utf8)[...]))
        #expect(log.recorded == 3)
        #expect(log.entries(since: nil, pool: nil).map(\.seq) == [1, 4])
        #expect(log.last?.event.detail == "ok")
    }
}
