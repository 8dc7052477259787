import PoolvisorConfig
import PoolvisorCore
import Testing

@testable import PoolvisorControl
@testable import PoolvisorDaemon
@testable import PoolvisorLinux
@testable import PoolvisorScalers
@testable import PoolvisorSystem

/// Wall-clock minutes in IANA zones at fixed instants, through Foundation's time-zone data.
@Suite struct WallClockTests {
    func time(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int) -> CivilTime {
        CivilTime(year: year, month: month, day: day, hour: hour, minute: minute)!
    }

    // 2025-01-15 12:34:56 UTC and 2025-07-15 12:34:56 UTC.
    let winter: Int64 = 1_736_944_496
    let summer: Int64 = 1_752_582_896

    @Test func utcAtFixedInstants() {
        #expect(WallClock.civilTime(in: "UTC", at: 0) == time(1970, 1, 1, 0, 0))
        #expect(WallClock.civilTime(in: "UTC", at: winter) == time(2025, 1, 15, 12, 34))
        #expect(WallClock.civilTime(in: "UTC", at: summer) == time(2025, 7, 15, 12, 34))
        #expect(WallClock.civilTime(in: "UTC", at: 951_868_799) == time(2000, 2, 29, 23, 59))
        #expect(WallClock.civilTime(in: "UTC", at: -1) == time(1969, 12, 31, 23, 59))
        #expect(WallClock.civilTime(in: "Etc/UTC", at: winter) == time(2025, 1, 15, 12, 34))
        #expect(WallClock.civilTime(in: "GMT", at: summer) == time(2025, 7, 15, 12, 34))
        #expect(WallClock.civilTime(in: "UTC", at: .max) == nil)
    }

    @Test func parisIsOneHourAheadInWinterAndTwoInSummer() {
        #expect(WallClock.civilTime(in: "Europe/Paris", at: winter) == time(2025, 1, 15, 13, 34))
        #expect(WallClock.civilTime(in: "Europe/Paris", at: summer) == time(2025, 7, 15, 14, 34))
        // Summer time began at 01:00 UTC on 30 March 2025: 01:59 CET, then 03:00 CEST.
        #expect(WallClock.civilTime(in: "Europe/Paris", at: 1_743_296_399) == time(2025, 3, 30, 1, 59))
        #expect(WallClock.civilTime(in: "Europe/Paris", at: 1_743_296_400) == time(2025, 3, 30, 3, 0))
        // Across midnight: 23:30 UTC on 31 December is already the new year in Paris.
        #expect(WallClock.civilTime(in: "Europe/Paris", at: 1_767_223_800) == time(2026, 1, 1, 0, 30))
    }

    @Test func newYorkIsFiveHoursBehindInWinterAndFourInSummer() {
        #expect(WallClock.civilTime(in: "America/New_York", at: winter) == time(2025, 1, 15, 7, 34))
        #expect(WallClock.civilTime(in: "America/New_York", at: summer) == time(2025, 7, 15, 8, 34))
        // 03:00 UTC on 1 January is still the old year in New York.
        #expect(WallClock.civilTime(in: "America/New_York", at: 1_735_700_400) == time(2024, 12, 31, 22, 0))
    }

    @Test func unknownZones() {
        for name in ["Nowhere/Special", "", "europe/paris", "Local"] {
            #expect(WallClock.civilTime(in: name, at: winter) == nil, "\(name)")
            #expect(!WallClock.knowsTimeZone(name), "\(name)")
        }
        for name in ["UTC", "Etc/UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"] {
            #expect(WallClock.knowsTimeZone(name), "\(name)")
        }
    }

    @Test func nowIsAMinuteOfToday() {
        let before = WallClock.secondsSinceEpoch()
        let now = WallClock.civilTime(in: "UTC")
        let after = WallClock.secondsSinceEpoch()
        #expect(now != nil)
        if let now {
            #expect(now.secondsSinceEpoch >= before - before % 60 && now.secondsSinceEpoch <= after)
        }
    }

    /// The trigger's whole path: the office-hours window in Paris at a fixed instant.
    @Test func aCronWindowOnTheParisClock() throws {
        let window = CronWindow(
            start: try CronSchedule(parsing: "0 9 * * 1-5"), end: try CronSchedule(parsing: "0 20 * * 1-5"))
        // Wednesday 15 January 2025, 12:34 UTC: 13:34 in Paris, 07:34 in New York.
        #expect(window.isOpen(at: try #require(WallClock.civilTime(in: "Europe/Paris", at: winter))))
        #expect(!window.isOpen(at: try #require(WallClock.civilTime(in: "America/New_York", at: winter))))
    }
}

@Suite struct JournalEventsTests {
    @Test func everyEventTypeHasItsOwnMessageIDAsTheREADMEListsThem() throws {
        let ids = LifecycleEvent.Kind.allCases.map(JournalEvents.messageID)
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.count == 32 && $0.allSatisfy(\.isHexDigit) })
        let readme = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/PoolvisorLinuxTests/WallClockTests.swift", with: "README.md"), encoding: .utf8)
        for kind in LifecycleEvent.Kind.allCases {
            #expect(readme.contains("| `\(kind.rawValue)` | `\(JournalEvents.messageID(kind))` |"), "\(kind)")
        }
    }
}
