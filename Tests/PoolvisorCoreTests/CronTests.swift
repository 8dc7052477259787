import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// Cron expressions, their matching and search backwards, and KEDA-style windows, on fixed civil times.
@Suite struct CronTests {
    func time(_ year: Int, _ month: Int, _ day: Int, _ hour: Int = 0, _ minute: Int = 0) -> CivilTime {
        CivilTime(year: year, month: month, day: day, hour: hour, minute: minute)!
    }
    func cron(_ text: String) -> CronSchedule {
        switch CronSchedule.parse(text) {
        case .success(let schedule): return schedule
        case .failure(let error): Issue.record("\(text): \(error)"); return try! CronSchedule(parsing: "* * * * *")
        }
    }
    func error(_ text: String) -> CronError? {
        if case .failure(let error) = CronSchedule.parse(text) { return error }
        return nil
    }
    /// The minutes of `day` at which the expression fires.
    func firings(_ text: String, on day: CivilTime) -> [CivilTime] {
        let s = cron(text)
        var result: [CivilTime] = []
        for h in 0..<24 {
            for m in 0..<60 {
                let t = time(day.year, day.month, day.day, h, m)
                if s.matches(t) { result.append(t) }
            }
        }
        return result
    }
    func minutes(_ text: String) -> [Int] {
        firings("\(text) 0 * * *", on: time(2025, 1, 1)).map(\.minute)
    }
    func hours(_ text: String) -> [Int] {
        firings("0 \(text) * * *", on: time(2025, 1, 1)).map(\.hour)
    }
    /// The days of 2025 ("MM-DD"), or of one month of it, on which "0 0 <dayFields>" fires.
    func days(_ dayFields: String, in month: Int? = nil) -> [String] {
        let s = cron("0 0 \(dayFields)")
        var result: [String] = []
        var t = time(2026, 1, 1)
        while t.year >= 2025 {
            t = t.endOfPreviousDay()
            let midnight = time(t.year, t.month, t.day)
            if s.matches(midnight), month == nil || month == t.month {
                result.append("\(t.month < 10 ? "0" : "")\(t.month)-\(t.day < 10 ? "0" : "")\(t.day)")
            }
        }
        return result.reversed()
    }

    // MARK: Civil time

    @Test func civilTimeIsValidatedAndOrdered() {
        #expect(CivilTime(year: 2024, month: 2, day: 29) != nil)
        #expect(CivilTime(year: 2025, month: 2, day: 29) == nil)
        #expect(CivilTime(year: 1900, month: 2, day: 29) == nil)  // not a leap year
        #expect(CivilTime(year: 2000, month: 2, day: 29) != nil)  // a leap year
        #expect(CivilTime(year: 2025, month: 4, day: 31) == nil)
        #expect(CivilTime(year: 2025, month: 13, day: 1) == nil)
        #expect(CivilTime(year: 2025, month: 0, day: 1) == nil)
        #expect(CivilTime(year: 2025, month: 1, day: 0) == nil)
        #expect(CivilTime(year: 2025, month: 1, day: 1, hour: 24) == nil)
        #expect(CivilTime(year: 2025, month: 1, day: 1, minute: 60) == nil)
        #expect(CivilTime(year: 2025, month: 1, day: 1, hour: -1) == nil)
        #expect(CivilTime(year: 0, month: 1, day: 1) == nil)
        #expect(time(2025, 1, 1, 23, 59) < time(2025, 1, 2))
        #expect(time(2024, 12, 31, 23, 59) < time(2025, 1, 1))
        #expect(time(2025, 3, 1, 9, 5) < time(2025, 3, 1, 9, 6))
        #expect(time(2025, 3, 31, 9, 5).description == "2025-03-31 09:05")
    }

    @Test func weekdaysFromTheCalendar() {
        #expect(time(1970, 1, 1).weekday == 4)  // Thursday
        #expect(time(1969, 12, 31).weekday == 3)
        #expect(time(2000, 1, 1).weekday == 6)  // Saturday
        #expect(time(2024, 2, 29).weekday == 4)
        #expect(time(2025, 6, 2).weekday == 1)  // Monday
        #expect(time(2025, 6, 8).weekday == 0)  // Sunday
        #expect(time(1, 1, 1).weekday == 1)  // proleptic Gregorian: a Monday
        #expect(time(9999, 12, 31).weekday == 5)
    }

    @Test func epochSecondsRoundTrip() {
        #expect(CivilTime(secondsSinceEpoch: 0) == time(1970, 1, 1))
        #expect(CivilTime(secondsSinceEpoch: 1_709_164_800 + 3 * 3600 + 25 * 60 + 59) == time(2024, 2, 29, 3, 25))
        #expect(CivilTime(secondsSinceEpoch: -1) == time(1969, 12, 31, 23, 59))
        #expect(CivilTime(secondsSinceEpoch: -86_400) == time(1969, 12, 31))
        #expect(CivilTime(secondsSinceEpoch: 951_782_400) == time(2000, 2, 29))
        #expect(CivilTime(secondsSinceEpoch: -62_135_596_800) == time(1, 1, 1))
        #expect(CivilTime(secondsSinceEpoch: -62_135_596_801) == nil)
        #expect(CivilTime(secondsSinceEpoch: 253_402_300_799) == time(9999, 12, 31, 23, 59))
        #expect(CivilTime(secondsSinceEpoch: 253_402_300_800) == nil)
        #expect(CivilTime(secondsSinceEpoch: .max) == nil)
        #expect(CivilTime(secondsSinceEpoch: .min) == nil)
        #expect(time(2024, 2, 29, 3, 25).secondsSinceEpoch == 1_709_177_100)
        // Every day of a century (2000 a leap year, 2100 not) turns into a date and back, a day and a
        // weekday before the next.
        var t = time(2101, 3, 1)
        var days = t.daysSinceEpoch
        var wrong: [CivilTime] = []
        while t.year >= 2000 {
            let previous = t.endOfPreviousDay()
            days -= 1
            if previous.daysSinceEpoch != days || CivilTime(secondsSinceEpoch: previous.secondsSinceEpoch) != previous
                || previous.weekday != (t.weekday + 6) % 7
            {
                wrong.append(previous)
            }
            t = previous
        }
        #expect(wrong.isEmpty)
        #expect(days == time(2000, 1, 1).daysSinceEpoch - 1)
    }

    @Test func steppingBackCrossesHoursDaysMonthsAndLeapDays() {
        #expect(time(2025, 1, 1, 10, 30).oneMinuteEarlier() == time(2025, 1, 1, 10, 29))
        #expect(time(2025, 1, 1, 10, 0).oneMinuteEarlier() == time(2025, 1, 1, 9, 59))
        #expect(time(2025, 1, 1, 0, 0).oneMinuteEarlier() == time(2024, 12, 31, 23, 59))
        #expect(time(2024, 3, 1).oneMinuteEarlier() == time(2024, 2, 29, 23, 59))
        #expect(time(2025, 3, 1).oneMinuteEarlier() == time(2025, 2, 28, 23, 59))
        #expect(time(2025, 5, 1, 7, 42).endOfPreviousHour() == time(2025, 5, 1, 6, 59))
        #expect(time(2025, 5, 1, 0, 42).endOfPreviousHour() == time(2025, 4, 30, 23, 59))
        #expect(time(2025, 5, 1, 7, 42).endOfPreviousDay() == time(2025, 4, 30, 23, 59))
        #expect(time(2100, 3, 1, 12).endOfPreviousDay() == time(2100, 2, 28, 23, 59))
    }

    // MARK: Parsing

    @Test func fieldSyntax() {
        #expect(minutes("*").count == 60)
        #expect(minutes("7") == [7])
        #expect(minutes("10-13") == [10, 11, 12, 13])
        #expect(minutes("*/15") == [0, 15, 30, 45])
        #expect(minutes("10-30/10") == [10, 20, 30])
        #expect(minutes("50/4") == [50, 54, 58])
        #expect(minutes("1,5-7,40-59/10") == [1, 5, 6, 7, 40, 50])
        #expect(minutes("5,5,5") == [5])
        #expect(minutes("59") == [59])
        #expect(minutes("0-59/100") == [0])
        #expect(hours("*/6") == [0, 6, 12, 18])
        #expect(hours("9-17/4,23") == [9, 13, 17, 23])
        #expect(cron(" \t0   9 * *\t1-5  ").description == " \t0   9 * *\t1-5  ")
    }

    @Test func monthAndWeekdayNames() {
        #expect(days("1 JAN,jun,Dec *") == ["01-01", "06-01", "12-01"])
        #expect(days("1 mar-MAY *") == ["03-01", "04-01", "05-01"])
        #expect(days("* JAN MON-fri", in: 1).count == 23)  // January 2025 has 23 weekdays
        #expect(days("* 2 sat,SUN") == ["02-01", "02-02", "02-08", "02-09", "02-15", "02-16", "02-22", "02-23"])
        #expect(cron("0 0 * * MON-FRI") == cron("0 0 * * MON-FRI"))
        #expect(cron("0 0 * * MON-FRI") != cron("0 0 * * 1-5"))  // equality includes the text
    }

    @Test func weekdaySevenIsSunday() {
        let sundays = days("* 6 0", in: 6)
        #expect(sundays == ["06-01", "06-08", "06-15", "06-22", "06-29"])
        #expect(days("* 6 7", in: 6) == sundays)
        #expect(days("* 6 SUN", in: 6) == sundays)
        #expect(days("* 6 5-7", in: 6) == days("* 6 5,6,0", in: 6))
        #expect(days("* 6 0-7", in: 6).count == 30)
        #expect(days("* 6 */2", in: 6) == days("* 6 0,2,4,6", in: 6))
    }

    @Test func macros() {
        #expect(cron("@yearly").description == "@yearly")
        let equivalents = [
            ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"), ("@DAILY", "0 0 * * *"),
        ]
        let now = time(2025, 6, 18, 15, 37)
        for (macro, expansion) in equivalents {
            #expect(cron(macro).latest(atOrBefore: now) == cron(expansion).latest(atOrBefore: now), "\(macro)")
        }
        #expect(cron("@weekly").latest(atOrBefore: now) == time(2025, 6, 15))
        #expect(cron("@hourly").latest(atOrBefore: now) == time(2025, 6, 18, 15))
    }

    @Test func errorsNameTheField() {
        func message(_ text: String) -> String? { error(text)?.message }
        #expect(message("0 25 * * *") == "the hour field '25' is out of range 0–23")
        #expect(error("0 25 * * *")?.field == .hour)
        #expect(message("60 * * * *") == "the minute field '60' is out of range 0–59")
        #expect(message("* * 0 * *") == "the day-of-month field '0' is out of range 1–31")
        #expect(message("* * 32 * *") == "the day-of-month field '32' is out of range 1–31")
        #expect(message("* * * 13 *") == "the month field '13' is out of range 1–12")
        #expect(message("* * * * 8") == "the day-of-week field '8' is out of range 0–7")
        #expect(error("* * * * 8")?.field == .dayOfWeek)
        #expect(message("* * * * 1-9") == "the day-of-week field '9' is out of range 0–7")
        #expect(message("* 17-9 * * *") == "the hour field range '17-9' runs backwards (17 is after 9)")
        #expect(message("* * * * FRI-MON") == "the day-of-week field range 'FRI-MON' runs backwards (5 is after 1)")
        #expect(message("*/0 * * * *") == "the minute field step '0' must be at least 1")
        #expect(message("*/x * * * *") == "the minute field step 'x' is not a number")
        #expect(message("5/ * * * *") == "the minute field '5/' has no step after '/'")
        #expect(message("*/2/3 * * * *") == "the minute field '*/2/3' has more than one '/'")
        #expect(message("1,,2 * * * *") == "the minute field '1,,2' has an empty list item")
        #expect(message("1, * * * *") == "the minute field '1,' has an empty list item")
        #expect(message("-5 * * * *") == "the minute field range '-5' is missing an end")
        #expect(message("* 3- * * *") == "the hour field range '3-' is missing an end")
        #expect(message("x * * * *") == "the minute field 'x' is not a number")
        #expect(message("* * * JANUARY *") == "the month field 'JANUARY' is not a number or a name JAN–DEC")
        #expect(message("* * * * MONDAY") == "the day-of-week field 'MONDAY' is not a number or a name SUN–SAT")
        #expect(message("* * MON * *") == "the day-of-month field 'MON' is not a number")  // names only in their field
        #expect(message("* * * * JAN") == "the day-of-week field 'JAN' is not a number or a name SUN–SAT")
        #expect(message("? * * * *") == "the minute field '?' is not a number")
        #expect(message("* * * * +1") == "the day-of-week field '+1' is not a number or a name SUN–SAT")
        #expect(message("0 9 * *") == "the cron expression '0 9 * *' has 4 fields, expected 5: minute hour day-of-month month day-of-week")
        #expect(message("0 0 9 * * 1") == "the cron expression '0 0 9 * * 1' has 6 fields, expected 5: minute hour day-of-month month day-of-week")
        #expect(message("  ") == "the cron expression is empty (expected 5 fields: minute hour day-of-month month day-of-week)")
        #expect(error("@reboot")?.message.hasPrefix("unknown cron macro '@reboot'") == true)
        #expect(error("@every 5m")?.field == nil)
        #expect(error("99999999999999999999 * * * *")?.message == "the minute field '99999999999999999999' is out of range 0–59")
    }

    // MARK: Matching

    @Test func matchingAllFields() {
        let s = cron("30 9 * 6 1-5")
        #expect(s.matches(time(2025, 6, 2, 9, 30)))  // a Monday in June
        #expect(!s.matches(time(2025, 6, 2, 9, 31)))
        #expect(!s.matches(time(2025, 6, 2, 10, 30)))
        #expect(!s.matches(time(2025, 6, 7, 9, 30)))  // Saturday
        #expect(!s.matches(time(2025, 7, 1, 9, 30)))  // July
        #expect(cron("* * * * *").matches(time(2025, 6, 7, 23, 59)))
    }

    @Test func bothDayFieldsRestrictedMatchEither() {
        // Vixie cron: the 13th of any month, and any Friday.
        #expect(days("13 6 5", in: 6) == ["06-06", "06-13", "06-20", "06-27"])  // the 13th of June 2025 is a Friday
        #expect(days("1,15 * MON", in: 9) == ["09-01", "09-08", "09-15", "09-22", "09-29"])
        #expect(days("10 * SUN", in: 8) == ["08-03", "08-10", "08-17", "08-24", "08-31"])
        // One of them `*` (also `*/n`, `?`): both must hold, so the `*` stands aside.
        #expect(days("* * MON", in: 9) == ["09-01", "09-08", "09-15", "09-22", "09-29"])
        #expect(days("10 * *", in: 8) == ["08-10"])
        #expect(days("*/2 * MON", in: 9) == ["09-01", "09-15", "09-29"])  // odd days that are Mondays
        #expect(days("1-7 * */7", in: 9) == ["09-07"])  // dow `*/7` is Sunday only, and starts with `*`: first Sunday
        #expect(days("? * MON", in: 9) == days("* * MON", in: 9))
        #expect(days("10 * ?", in: 8) == ["08-10"])
        #expect(days("* * *", in: 2).count == 28)
    }

    @Test func leapDay() {
        let s = cron("0 0 29 2 *")
        #expect(s.canEverMatch)
        #expect(s.matches(time(2024, 2, 29)))
        #expect(!s.matches(time(2024, 3, 1)))
        #expect(s.latest(atOrBefore: time(2024, 12, 31, 23, 59)) == time(2024, 2, 29))
        #expect(s.latest(atOrBefore: time(2024, 2, 29)) == time(2024, 2, 29))
        #expect(s.latest(atOrBefore: time(2024, 2, 28, 23, 59), horizonDays: 3000) == time(2020, 2, 29))
        // Beyond a year back: not found with the default horizon; found with a longer one.
        #expect(s.latest(atOrBefore: time(2025, 6, 1)) == nil)
        #expect(s.latest(atOrBefore: time(2025, 6, 1), horizonDays: 4 * 366) == time(2024, 2, 29))
        // 2100 is not a leap year: from 2103 the last one is 2096.
        #expect(s.latest(atOrBefore: time(2103, 12, 31), horizonDays: 8 * 366) == time(2096, 2, 29))
    }

    @Test func latestSearchesBackAcrossHoursDaysMonthsAndYears() {
        let s = cron("15,45 9-17 * * 1-5")
        #expect(s.latest(atOrBefore: time(2025, 6, 4, 12, 50)) == time(2025, 6, 4, 12, 45))  // same hour
        #expect(s.latest(atOrBefore: time(2025, 6, 4, 12, 45)) == time(2025, 6, 4, 12, 45))  // at counts
        #expect(s.latest(atOrBefore: time(2025, 6, 4, 12, 10)) == time(2025, 6, 4, 11, 45))  // previous hour
        #expect(s.latest(atOrBefore: time(2025, 6, 4, 9, 10)) == time(2025, 6, 3, 17, 45))  // previous day
        #expect(s.latest(atOrBefore: time(2025, 6, 4, 3, 0)) == time(2025, 6, 3, 17, 45))
        #expect(s.latest(atOrBefore: time(2025, 6, 9, 8, 0)) == time(2025, 6, 6, 17, 45))  // Monday → Friday
        #expect(s.latest(atOrBefore: time(2025, 6, 1, 8, 0)) == time(2025, 5, 30, 17, 45))  // across a month
        #expect(s.latest(atOrBefore: time(2025, 1, 1, 8, 0)) == time(2024, 12, 31, 17, 45))  // across a year
        #expect(s.latest(atOrBefore: time(2025, 6, 4, 20, 0)) == time(2025, 6, 4, 17, 45))  // later the same day

        #expect(cron("0 0 1 1 *").latest(atOrBefore: time(2025, 12, 31, 23, 59)) == time(2025, 1, 1))
        #expect(cron("0 0 1 1 *").latest(atOrBefore: time(2025, 1, 1)) == time(2025, 1, 1))
        #expect(cron("0 0 1 1 *").latest(atOrBefore: time(2024, 12, 31, 23, 59)) == time(2024, 1, 1))
        #expect(cron("59 23 31 12 *").latest(atOrBefore: time(2025, 12, 31, 23, 58)) == time(2024, 12, 31, 23, 59))
        #expect(cron("0 12 31 * *").latest(atOrBefore: time(2025, 5, 15)) == time(2025, 3, 31, 12))  // skips April
        #expect(cron("0 12 30 * *").latest(atOrBefore: time(2025, 3, 15)) == time(2025, 1, 30, 12))  // skips February
        #expect(cron("* * * * *").latest(atOrBefore: time(2025, 3, 15, 4, 5)) == time(2025, 3, 15, 4, 5))
        #expect(cron("0 0 * DEC *").latest(atOrBefore: time(2025, 11, 30)) == time(2024, 12, 31))
        // Search into earlier hours where the hour matches but no minute is left in it.
        #expect(cron("30 8,10 * * *").latest(atOrBefore: time(2025, 3, 15, 10, 15)) == time(2025, 3, 15, 8, 30))
        #expect(cron("30 0 * * *").latest(atOrBefore: time(2025, 3, 15, 0, 15)) == time(2025, 3, 14, 0, 30))
        // The horizon counts whole days before the date.
        #expect(cron("0 0 * * *").latest(atOrBefore: time(2025, 3, 15, 12), horizonDays: 0) == time(2025, 3, 15))
        #expect(cron("0 13 * * *").latest(atOrBefore: time(2025, 3, 15, 12), horizonDays: 0) == nil)
        #expect(cron("0 13 * * *").latest(atOrBefore: time(2025, 3, 15, 12), horizonDays: 1) == time(2025, 3, 14, 13))
        #expect(cron("0 0 * * *").latest(atOrBefore: time(2025, 3, 15), horizonDays: -1) == nil)
        #expect(cron("0 0 1 * *").latest(atOrBefore: time(2025, 3, 15), horizonDays: 13) == nil)
        #expect(cron("0 0 1 * *").latest(atOrBefore: time(2025, 3, 15), horizonDays: 14) == time(2025, 3, 1))
    }

    /// `latest` against the obvious minute-by-minute search, over a spread of expressions and instants.
    @Test func latestAgreesWithAMinuteByMinuteSearch() {
        let expressions = [
            "*/7 */5 * * *", "0 0 13 * 5", "17 3 * * 0", "5 4 29-31 * *", "0 12 * FEB *", "1-3 22-23 1,15 * 1-5",
        ]
        let instants = [time(2024, 2, 29, 12, 0), time(2025, 1, 1, 0, 0), time(2025, 3, 31, 23, 59), time(2025, 3, 1, 3, 5)]
        for text in expressions {
            let s = cron(text)
            for now in instants {
                var t = now
                var expected: CivilTime?
                for _ in 0..<(40 * 24 * 60) {
                    if s.matches(t) { expected = t; break }
                    t = t.oneMinuteEarlier()
                }
                if let expected { #expect(s.latest(atOrBefore: now) == expected, "\(text) at \(now)") }
            }
        }
    }

    @Test func anExpressionThatNeverMatches() {
        let never = cron("0 0 30 2 *")
        #expect(!never.canEverMatch)
        #expect(!cron("0 0 31 4,6,9,11 *").canEverMatch)
        #expect(cron("0 0 31 4,5 *").canEverMatch)
        #expect(cron("0 0 30 2 MON").canEverMatch)  // either day rule: every Monday in February
        #expect(!cron("0 0 30 2 *").canEverMatch)
        #expect(!cron("0 0 30,31 2 */2").canEverMatch)  // `*/2` starts with `*`: both must hold
        #expect(never.latest(atOrBefore: time(2025, 6, 1)) == nil)
        #expect(never.latest(atOrBefore: time(2025, 6, 1), horizonDays: 3000) == nil)
        let window = CronWindow(start: never, end: cron("0 20 * * *"))
        #expect(!window.isOpen(at: time(2025, 6, 1, 12)))
        #expect(!window.isOpen(at: time(2024, 2, 29, 12)))
    }

    // MARK: Windows

    @Test func officeHoursOnWeekdays() {
        let w = CronWindow(start: cron("0 9 * * 1-5"), end: cron("0 20 * * 1-5"))
        // Monday 2 June 2025.
        #expect(!w.isOpen(at: time(2025, 6, 2, 8, 59)))
        #expect(w.isOpen(at: time(2025, 6, 2, 9, 0)))
        #expect(w.isOpen(at: time(2025, 6, 2, 12, 0)))
        #expect(w.isOpen(at: time(2025, 6, 2, 19, 59)))
        #expect(!w.isOpen(at: time(2025, 6, 2, 20, 0)))
        #expect(!w.isOpen(at: time(2025, 6, 2, 21, 0)))
        #expect(!w.isOpen(at: time(2025, 6, 3, 3, 0)))
        #expect(w.isOpen(at: time(2025, 6, 6, 15, 0)))  // Friday
        #expect(!w.isOpen(at: time(2025, 6, 7, 12, 0)))  // Saturday
        #expect(!w.isOpen(at: time(2025, 6, 8, 12, 0)))  // Sunday
    }

    @Test func overnightWindow() {
        let w = CronWindow(start: cron("0 22 * * *"), end: cron("0 6 * * *"))
        #expect(w.isOpen(at: time(2025, 6, 2, 23, 0)))
        #expect(w.isOpen(at: time(2025, 6, 3, 3, 0)))
        #expect(w.isOpen(at: time(2025, 1, 1, 3, 0)))  // across the new year
        #expect(w.isOpen(at: time(2025, 6, 2, 22, 0)))
        #expect(w.isOpen(at: time(2025, 6, 3, 5, 59)))
        #expect(!w.isOpen(at: time(2025, 6, 3, 6, 0)))
        #expect(!w.isOpen(at: time(2025, 6, 3, 12, 0)))
        #expect(!w.isOpen(at: time(2025, 6, 3, 21, 59)))
    }

    @Test func aWindowWhoseStartAndEndCoincideIsClosed() {
        let same = CronWindow(start: cron("0 9 * * *"), end: cron("0 9 * * *"))
        for t in [time(2025, 6, 2, 8, 59), time(2025, 6, 2, 9, 0), time(2025, 6, 2, 9, 1), time(2025, 6, 2, 23, 0)] {
            #expect(!same.isOpen(at: t), "\(t)")
        }
        // A start and an end in the same minute: the end wins; the next start opens again.
        let daily = CronWindow(start: cron("0 9 * * *"), end: cron("0 9 * * MON"))
        #expect(daily.isOpen(at: time(2025, 6, 1, 12, 0)))  // Sunday: open since Tuesday
        #expect(!daily.isOpen(at: time(2025, 6, 2, 9, 0)))  // Monday 09:00
        #expect(!daily.isOpen(at: time(2025, 6, 2, 23, 0)))
        #expect(daily.isOpen(at: time(2025, 6, 3, 9, 0)))  // Tuesday
    }

    @Test func startsWithoutEndsBetweenKeepTheWindowOpenUntilTheEnd() {
        // Starts every day, ends only on weekdays: closed at Friday 17:00, open again from Saturday 09:00
        // through to Monday 17:00 (KEDA's next-start/next-end rule would stay closed until Monday 09:00).
        let w = CronWindow(start: cron("0 9 * * *"), end: cron("0 17 * * 1-5"))
        #expect(!w.isOpen(at: time(2025, 6, 6, 18, 0)))  // Friday evening
        #expect(!w.isOpen(at: time(2025, 6, 7, 8, 59)))
        #expect(w.isOpen(at: time(2025, 6, 7, 9, 0)))  // Saturday
        #expect(w.isOpen(at: time(2025, 6, 8, 3, 0)))
        #expect(w.isOpen(at: time(2025, 6, 9, 16, 59)))  // Monday
        #expect(!w.isOpen(at: time(2025, 6, 9, 17, 0)))
        // An end that never fires: open from the first start on; closed with no start within the year.
        let forever = CronWindow(start: cron("0 0 1 1 *"), end: cron("0 0 30 2 *"))
        #expect(forever.isOpen(at: time(2025, 1, 1)))
        #expect(forever.isOpen(at: time(2025, 12, 31, 23, 59)))
        let leap = CronWindow(start: cron("0 0 29 2 *"), end: cron("0 0 1 3 *"))
        #expect(leap.isOpen(at: time(2024, 2, 29, 23, 59)))
        #expect(!leap.isOpen(at: time(2024, 3, 1)))
        #expect(!leap.isOpen(at: time(2025, 2, 28, 12)))
    }

    @Test func anEndEarlierOnTheStartsDayDoesNotClose() {
        let yearly = CronWindow(start: cron("0 12 1 6 *"), end: cron("0 6 1 6 *"))
        #expect(!yearly.isOpen(at: time(2025, 6, 1, 11, 59)))
        #expect(yearly.isOpen(at: time(2025, 6, 1, 12)))
        #expect(yearly.isOpen(at: time(2026, 6, 1, 5, 59)))
        #expect(!yearly.isOpen(at: time(2026, 6, 1, 6)))
        let daily = CronWindow(start: cron("0 12 * * *"), end: cron("0 6 * * *"))
        #expect(daily.isOpen(at: time(2025, 6, 1, 12)))
        #expect(daily.isOpen(at: time(2025, 6, 2, 5, 59)))
        #expect(!daily.isOpen(at: time(2025, 6, 1, 11, 59)))
    }
}
