import Foundation
import Glibc
import PoolvisorCore

/// The system's real-time clock read in an IANA time zone, for cron triggers: the core's `CronWindow`
/// works on `CivilTime` and never sees a clock or a zone database.
///
/// Zones come from Foundation's `TimeZone(identifier:)` (on Linux its own ICU data, not
/// /usr/share/zoneinfo); names are case-sensitive, as IANA's are ("Europe/Paris"). "UTC", "Etc/UTC",
/// "GMT" and "Etc/GMT" are answered here without Foundation, so they work wherever the process runs.
/// Foundation is linked already, through TOMLKit; this is the one other file that imports it.
public enum WallClock {
    /// Seconds since 1970-01-01 00:00 UTC (CLOCK_REALTIME), whole seconds, rounded down.
    public static func secondsSinceEpoch() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    /// Seconds since 1970-01-01 00:00 UTC (CLOCK_REALTIME), with their fraction.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// When `instant` (the core's monotonic clock) was on the wall clock, given both clocks read now.
    public static func seconds(at instant: Instant, monotonicNow: Instant, wallNow: Double) -> Double {
        wallNow - monotonicNow.since(instant).seconds
    }

    /// The minute on the wall clocks of `timeZone` at `seconds` since the epoch (by default now); nil
    /// for a zone Foundation does not know, or an instant outside years 1–9999.
    public static func civilTime(in timeZone: String, at seconds: Int64 = secondsSinceEpoch()) -> CivilTime? {
        guard let offset = offsetFromUTC(timeZone, at: seconds) else { return nil }
        let (local, overflow) = seconds.addingReportingOverflow(Int64(offset))
        return overflow ? nil : CivilTime(secondsSinceEpoch: local)
    }

    /// Whether `name` is a time zone `civilTime(in:)` can use (for validating a pools file).
    public static func knowsTimeZone(_ name: String) -> Bool {
        utcNames.contains(name) || TimeZone(identifier: name) != nil
    }

    private static let utcNames: Set<String> = ["UTC", "Etc/UTC", "GMT", "Etc/GMT"]

    /// Seconds to add to UTC for the zone's wall clock at that instant (daylight saving time included).
    private static func offsetFromUTC(_ name: String, at seconds: Int64) -> Int? {
        if utcNames.contains(name) { return 0 }
        guard let zone = TimeZone(identifier: name) else { return nil }
        return zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(seconds)))
    }
}
