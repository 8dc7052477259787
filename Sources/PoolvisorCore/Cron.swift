/// Cron schedules and the windows of KEDA's cron scaler: when a `cron` trigger's window is open, it
/// raises the autoscaler's floor to its `desired_replicas` (`TriggerReading.cron`). Everything here works
/// on wall-clock fields in the trigger's time zone (`CivilTime`); the edge turns the system clock and an
/// IANA zone name into one (`WallClock`), so the core never reads a clock or a zone database.

// MARK: - Civil time

/// A minute on a wall clock: year, month (1–12), day (1–31), hour (0–23), minute (0–59), in the
/// proleptic Gregorian calendar and no particular time zone. Ordered chronologically.
public struct CivilTime: Sendable, Equatable, Hashable, Comparable, CustomStringConvertible, Codable {
    public let year: Int
    public let month: Int
    public let day: Int
    public let hour: Int
    public let minute: Int

    /// Nil unless the fields name a real minute: year 1–9999, month 1–12, a day that month has (29
    /// February only in leap years), hour 0–23, minute 0–59.
    public init?(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0) {
        guard (1...9999).contains(year), (1...12).contains(month),
            day >= 1, day <= CivilTime.daysIn(month: month, of: year),
            (0...23).contains(hour), (0...59).contains(minute)
        else { return nil }
        self.init(unchecked: year, month, day, hour, minute)
    }

    /// The minute containing `secondsSinceEpoch` seconds after 1970-01-01 00:00 (negative: before),
    /// read on a clock whose offset from UTC has already been added in. Nil outside years 1–9999.
    public init?(secondsSinceEpoch seconds: Int64) {
        // Years 1–9999 are within ±253 402 300 800 s of the epoch; beyond that, nothing to compute.
        guard seconds > -62_200_000_000, seconds < 253_500_000_000 else { return nil }
        let s = Int(seconds)
        let days = s >= 0 ? s / 86_400 : -((-s + 86_399) / 86_400)  // floor division
        let secondOfDay = s - days * 86_400
        let (y, m, d) = CivilTime.civil(fromDays: days)
        self.init(year: y, month: m, day: d, hour: secondOfDay / 3600, minute: secondOfDay % 3600 / 60)
    }

    init(unchecked year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
    }

    /// Days from 1970-01-01 to this minute's date (negative before it).
    public var daysSinceEpoch: Int { CivilTime.days(fromCivil: year, month, day) }

    /// Seconds from 1970-01-01 00:00 to the start of this minute, on the same clock.
    public var secondsSinceEpoch: Int64 { Int64(daysSinceEpoch) * 86_400 + Int64(hour * 3600 + minute * 60) }

    /// 0 = Sunday, 1 = Monday … 6 = Saturday.
    public var weekday: Int { CivilTime.weekday(daysSinceEpoch: daysSinceEpoch) }

    /// The minute before this one.
    public func oneMinuteEarlier() -> CivilTime {
        minute > 0 ? CivilTime(unchecked: year, month, day, hour, minute - 1) : endOfPreviousHour()
    }

    /// Minute 59 of the hour before this one's (crossing into the previous day at midnight).
    public func endOfPreviousHour() -> CivilTime {
        hour > 0 ? CivilTime(unchecked: year, month, day, hour - 1, 59) : endOfPreviousDay()
    }

    /// 23:59 on the day before this one (crossing months, years and leap days). The calendar is
    /// proleptic: the day before 0001-01-01 is 0000-12-31.
    public func endOfPreviousDay() -> CivilTime {
        let (y, m, d) = CivilTime.previousDay(year, month, day)
        return CivilTime(unchecked: y, m, d, 23, 59)
    }

    public static func < (a: CivilTime, b: CivilTime) -> Bool {
        (a.year, a.month, a.day, a.hour, a.minute) < (b.year, b.month, b.day, b.hour, b.minute)
    }

    /// "2025-03-31 09:05"
    public var description: String {
        func pad(_ n: Int, _ width: Int) -> String {
            let s = String(n)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2)) \(pad(hour, 2)):\(pad(minute, 2))"
    }

    // The calendar arithmetic (Howard Hinnant's days_from_civil and civil_from_days).

    public static func isLeapYear(_ year: Int) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

    public static func daysIn(month: Int, of year: Int) -> Int {
        switch month {
        case 2: return isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400  // 0…399
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1  // 0…365, from 1 March
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear  // 0…146096
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// 1970-01-01 was a Thursday.
    static func weekday(daysSinceEpoch days: Int) -> Int { ((days % 7) + 11) % 7 }

    static func previousDay(_ year: Int, _ month: Int, _ day: Int) -> (Int, Int, Int) {
        if day > 1 { return (year, month, day - 1) }
        if month > 1 { return (year, month - 1, daysIn(month: month - 1, of: year)) }
        return (year - 1, 12, 31)
    }
}

// MARK: - Schedules

/// One of a cron expression's five fields, named as error messages name it.
public enum CronField: String, Sendable, CaseIterable {
    case minute
    case hour
    case dayOfMonth = "day-of-month"
    case month
    case dayOfWeek = "day-of-week"

    /// The values the field accepts (7 is Sunday again in day-of-week).
    public var range: ClosedRange<Int> {
        switch self {
        case .minute: 0...59
        case .hour: 0...23
        case .dayOfMonth: 1...31
        case .month: 1...12
        case .dayOfWeek: 0...7
        }
    }

    fileprivate var names: [String] {
        switch self {
        case .month: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
        case .dayOfWeek: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
        default: []
        }
    }
}

/// Why a text is not a cron expression: the message names the field and quotes the offending part,
/// e.g. "the hour field '25' is out of range 0–23". `field` is nil for faults of the whole expression
/// (the number of fields, an unknown macro).
public struct CronError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: CronField?
    public var message: String

    public init(field: CronField?, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { message }
}

/// A standard 5-field cron expression, "minute hour day-of-month month day-of-week", as Vixie cron and
/// KEDA's cron scaler (robfig/cron's standard parser) read it. Each field is a comma-separated list of
/// `*`, a number, a range `a-b`, or a step `*/n`, `a-b/n`, `a/n` (from a to the field's maximum);
/// months may be named JAN–DEC and weekdays SUN–SAT (any case); weekday 0 and 7 are both Sunday; `?`
/// is accepted for `*` in the two day fields, as robfig/cron does. The macros @yearly (@annually),
/// @monthly, @weekly, @daily (@midnight) and @hourly stand for their 5-field expansions.
///
/// The days: when both day-of-month and day-of-week are restricted, a day matches when EITHER does
/// ("0 0 13 * 5": every 13th and every Friday); when either begins with `*` (`*`, `*/2`), both must,
/// so the `*` one stands aside. This is Vixie cron's rule; robfig/cron differs only for a day field
/// that is a `*` with a step, which it counts as restricted.
///
/// Equality compares the text as well as the sets it stands for; `description` is the text as given.
public struct CronSchedule: Sendable, Equatable, CustomStringConvertible, Codable {
    /// Bit n set: value n matches.
    var minutes: UInt64 = 0
    var hours: UInt64 = 0
    var daysOfMonth: UInt64 = 0
    var months: UInt64 = 0
    var daysOfWeek: UInt64 = 0  // 0–6, Sunday = 0
    var dayOfMonthIsStar = false
    var dayOfWeekIsStar = false
    public let description: String

    /// Parses `text` (leading and trailing white space ignored; fields separated by spaces or tabs).
    public static func parse(_ text: String) -> Result<CronSchedule, CronError> {
        Result { () throws(CronError) in try CronSchedule(parsing: text) }
    }

    /// As `parse`, throwing.
    public init(parsing text: String) throws(CronError) {
        description = text
        var expression = Substring(text)
        while let c = expression.first, c == " " || c == "\t" { expression.removeFirst() }
        while let c = expression.last, c == " " || c == "\t" { expression.removeLast() }
        if expression.first == "@" {
            switch expression.lowercased() {
            case "@yearly", "@annually": expression = "0 0 1 1 *"
            case "@monthly": expression = "0 0 1 * *"
            case "@weekly": expression = "0 0 * * 0"
            case "@daily", "@midnight": expression = "0 0 * * *"
            case "@hourly": expression = "0 * * * *"
            default:
                throw CronError(
                    field: nil,
                    message: "unknown cron macro '\(expression)' (use @yearly, @annually, @monthly, @weekly, "
                        + "@daily, @midnight, @hourly or 5 fields)")
            }
        }
        let fields = expression.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count == 5 else {
            throw CronError(
                field: nil,
                message: fields.isEmpty
                    ? "the cron expression is empty (expected 5 fields: minute hour day-of-month month day-of-week)"
                    : "the cron expression '\(expression)' has \(fields.count) field\(fields.count == 1 ? "" : "s"), "
                        + "expected 5: minute hour day-of-month month day-of-week")
        }
        minutes = try Self.parseField(fields[0], .minute).bits
        hours = try Self.parseField(fields[1], .hour).bits
        (daysOfMonth, dayOfMonthIsStar) = try Self.parseField(fields[2], .dayOfMonth)
        months = try Self.parseField(fields[3], .month).bits
        let (weekdays, weekdayIsStar) = try Self.parseField(fields[4], .dayOfWeek)
        // 7 is Sunday too.
        daysOfWeek = (weekdays & 0x7F) | (weekdays >> 7 & 1)
        dayOfWeekIsStar = weekdayIsStar
    }

    /// A field's values as bits, and whether it begins with `*` (or `?`), for the day rule.
    private static func parseField(
        _ text: Substring, _ field: CronField
    ) throws(CronError) -> (bits: UInt64, star: Bool) {
        func fail(_ message: String) -> CronError {
            CronError(field: field, message: "the \(field.rawValue) field \(message)")
        }
        let range = field.range
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw fail("'\(text)' has an empty list item") }
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw fail("'\(item)' has more than one '/'") }
            let span = parts[0]
            var low: Int
            var high: Int
            if span == "*" || (span == "?" && (field == .dayOfMonth || field == .dayOfWeek)) {
                (low, high) = (range.lowerBound, field == .dayOfWeek ? 6 : range.upperBound)
            } else if let dash = span.firstIndex(of: "-") {
                guard dash != span.startIndex, span.index(after: dash) != span.endIndex else {
                    throw fail("range '\(span)' is missing an end")
                }
                low = try value(span[..<dash], field, fail)
                high = try value(span[span.index(after: dash)...], field, fail)
                guard low <= high else { throw fail("range '\(span)' runs backwards (\(low) is after \(high))") }
            } else {
                low = try value(span, field, fail)
                high = parts.count == 2 ? (field == .dayOfWeek ? 6 : range.upperBound) : low
                if high < low { high = low }  // "7/2" in day-of-week: just Sunday
            }
            var step = 1
            if parts.count == 2 {
                let stepText = parts[1]
                guard let n = number(stepText) else {
                    throw fail(
                        stepText.isEmpty ? "'\(item)' has no step after '/'" : "step '\(stepText)' is not a number")
                }
                guard n >= 1 else { throw fail("step '\(stepText)' must be at least 1") }
                // A step past the field's end selects only the start (as Vixie cron has it); one past
                // `maximumNumber` is not what was meant, and would not be read as written.
                guard n <= maximumNumber else { throw fail("step '\(stepText)' is too large (at most \(maximumNumber))") }
                step = n
            }
            for v in stride(from: low, through: high, by: step) { bits |= 1 << UInt64(v) }
        }
        return (bits, text.first == "*" || text.first == "?")
    }

    private static func value(
        _ text: Substring, _ field: CronField, _ fail: (String) -> CronError
    ) throws(CronError) -> Int {
        let range = field.range
        if let n = number(text) {
            guard range.contains(n) else {
                throw fail("'\(text)' is out of range \(range.lowerBound)–\(range.upperBound)")
            }
            return n
        }
        let names = field.names
        if let i = names.firstIndex(of: text.uppercased()) { return field == .month ? i + 1 : i }
        if names.isEmpty { throw fail("'\(text)' is not a number") }
        throw fail("'\(text)' is not a number or a name \(names.first!)–\(names.last!)")
    }

    /// Decimal digits only (no sign), saturating far above any field's range.
    /// The largest number a field reads as written; larger ones read as `maximumNumber + 1`.
    static let maximumNumber = 1_000_000

    private static func number(_ text: Substring) -> Int? {
        guard !text.isEmpty else { return nil }
        var n = 0
        for c in text.utf8 {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            n = min(n * 10 + Int(c - UInt8(ascii: "0")), maximumNumber + 1)
        }
        return n
    }

    // MARK: Matching

    /// Whether the schedule fires at minute `t`.
    public func matches(_ t: CivilTime) -> Bool {
        minutes & (1 << UInt64(t.minute)) != 0 && hours & (1 << UInt64(t.hour)) != 0
            && months & (1 << UInt64(t.month)) != 0 && dayMatches(t.day, weekday: t.weekday)
    }

    func dayMatches(_ day: Int, weekday: Int) -> Bool {
        let dom = daysOfMonth & (1 << UInt64(day)) != 0
        let dow = daysOfWeek & (1 << UInt64(weekday)) != 0
        return dayOfMonthIsStar || dayOfWeekIsStar ? dom && dow : dom || dow
    }

    /// The first minute after `t` at which the schedule fires, within `horizonDays` (nil: none).
    /// Days and hours that cannot match are skipped whole, so a yearly schedule costs ~400 steps.
    public func next(after t: CivilTime, horizonDays: Int = 4 * 366) -> CivilTime? {
        let end = t.secondsSinceEpoch + Int64(horizonDays) * 86_400
        var s = t.secondsSinceEpoch + 60
        while s <= end {
            guard let c = CivilTime(secondsSinceEpoch: s) else { return nil }
            if months & (1 << UInt64(c.month)) == 0 || !dayMatches(c.day, weekday: c.weekday) {
                s = Int64(c.daysSinceEpoch + 1) * 86_400
            } else if hours & (1 << UInt64(c.hour)) == 0 {
                s = Int64(c.daysSinceEpoch) * 86_400 + Int64(c.hour + 1) * 3600
            } else if minutes & (1 << UInt64(c.minute)) == 0 {
                s += 60
            } else {
                return c
            }
        }
        return nil
    }

    /// Whether the schedule fires at all, ever: false for a day that no month it names has, such as
    /// "0 0 30 2 *" or "0 0 31 4,6 *". (Every date falls on every weekday in some year, 29 February
    /// included, so the weekday never rules a schedule out.)
    public var canEverMatch: Bool {
        if !dayOfMonthIsStar && !dayOfWeekIsStar { return true }  // either rule: the weekdays suffice
        for month in 1...12 where months & (1 << UInt64(month)) != 0 {
            let longest: UInt64 = month == 2 ? 29 : UInt64(CivilTime.daysIn(month: month, of: 1))
            if daysOfMonth & ((2 << longest) - 1) != 0 { return true }
        }
        return false
    }

    /// The last minute at or before `t` at which the schedule fires, looking back at most `horizonDays`
    /// whole days before `t`'s date (0: only `t`'s own day); nil when there is none in that span.
    ///
    /// Steps back a day at a time, and a month at a time through months the schedule leaves out; on a
    /// matching day it takes the latest matching hour and minute from bit masks. A year's horizon is at
    /// most a few hundred cheap steps, a few microseconds.
    public func latest(atOrBefore t: CivilTime, horizonDays: Int = 366) -> CivilTime? {
        guard horizonDays >= 0 else { return nil }
        var (year, month, day) = (t.year, t.month, t.day)
        var days = t.daysSinceEpoch
        let earliest = days - horizonDays
        var weekday = CivilTime.weekday(daysSinceEpoch: days)
        var (hourLimit, minuteLimit) = (t.hour, t.minute)
        while days >= earliest {
            if months & (1 << UInt64(month)) == 0 {
                // To the last day of the previous month.
                days -= day
                weekday = ((weekday - day) % 7 + 7) % 7
                (year, month) = month == 1 ? (year - 1, 12) : (year, month - 1)
                day = CivilTime.daysIn(month: month, of: year)
                (hourLimit, minuteLimit) = (23, 59)
                continue
            }
            if dayMatches(day, weekday: weekday), let hour = Self.highest(hours, atMost: hourLimit) {
                if hour < hourLimit {
                    return CivilTime(unchecked: year, month, day, hour, Self.highest(minutes, atMost: 59)!)
                }
                if let minute = Self.highest(minutes, atMost: minuteLimit) {
                    return CivilTime(unchecked: year, month, day, hour, minute)
                }
                if hour > 0, let earlier = Self.highest(hours, atMost: hour - 1) {
                    return CivilTime(unchecked: year, month, day, earlier, Self.highest(minutes, atMost: 59)!)
                }
            }
            days -= 1
            weekday = weekday == 0 ? 6 : weekday - 1
            (year, month, day) = CivilTime.previousDay(year, month, day)
            (hourLimit, minuteLimit) = (23, 59)
        }
        return nil
    }

    /// The highest set bit at or below `limit` (0…63).
    private static func highest(_ bits: UInt64, atMost limit: Int) -> Int? {
        let masked = limit >= 63 ? bits : bits & ((1 << UInt64(limit + 1)) - 1)
        return masked == 0 ? nil : 63 - masked.leadingZeroBitCount
    }
}

// MARK: - Windows

/// A cron trigger's window: opened by each `start`, closed by each `end`, on the wall clock of the
/// trigger's time zone (KEDA's cron scaler: "0 9 * * 1-5" to "0 20 * * 1-5" is open 09:00–20:00 on
/// weekdays, "0 22 * * *" to "0 6 * * *" overnight).
///
/// The rule: the window is open at `t` when the latest start at or before `t` (within a year, 366 days)
/// is later than the latest end at or before `t` — that is, when some start has come and no end since.
/// A start and an end in the same minute close the window (the end wins: a window of no length), so
/// identical `start` and `end` are never open; no start within the year means closed; a start with no
/// end at or after it (an `end` that never fires) stays open.
///
/// KEDA asks the other way round: it is open when the next end comes before the next start. Where
/// starts and ends alternate, as in every sensible window, the two agree (the next event is an end
/// exactly when the last one was a start). Where they don't — "0 9 * * *" to "0 17 * * 1-5" has
/// weekend starts with no end between — this one is open from a start until the next end, which is
/// what a window means, where KEDA's would stay closed until the last start before that end.
public struct CronWindow: Sendable, Equatable, Codable {
    public var start: CronSchedule
    public var end: CronSchedule

    /// How far back the latest start is looked for.
    public static let horizonDays = 366

    public init(start: CronSchedule, end: CronSchedule) {
        self.start = start
        self.end = end
    }

    public func isOpen(at t: CivilTime) -> Bool {
        guard let opened = start.latest(atOrBefore: t, horizonDays: Self.horizonDays) else { return false }
        // Only an end at or after that start matters, so look no further back than its day.
        guard let closed = end.latest(atOrBefore: t, horizonDays: t.daysSinceEpoch - opened.daysSinceEpoch) else {
            return true
        }
        return closed < opened
    }
}
