/// A point on the monotonic clock, in nanoseconds since an arbitrary origin (CLOCK_MONOTONIC at the edge,
/// a fake clock in tests). The core never reads a clock itself: every event carries its `Instant`.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible, Codable {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// A bare number: an upgrade's handover holds several per worker and per event.
    public init(from decoder: any Decoder) throws {
        nanoseconds = try decoder.singleValueContainer().decode(UInt64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(nanoseconds)
    }

    public static let zero = Instant(nanoseconds: 0)

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public static func + (a: Instant, d: Duration) -> Instant {
        let ns = d.nanosecondsClamped
        return Instant(nanoseconds: ns <= 0 ? a.nanoseconds : a.nanoseconds &+ UInt64(ns))
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    public func since(_ earlier: Instant) -> Duration {
        nanoseconds > earlier.nanoseconds ? .nanoseconds(Int64(nanoseconds - earlier.nanoseconds)) : .zero
    }

    public var description: String { "t+\(Duration.nanoseconds(Int64(nanoseconds)).seconds)s" }
}

extension Duration {
    /// Whole nanoseconds, saturating at Int64.max.
    public var nanosecondsClamped: Int64 {
        let (s, atto) = components
        let (scaled, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? Int64.min : Int64.max }
        return scaled + atto / 1_000_000_000
    }

    /// Seconds as a Double, for arithmetic and display.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    public static func seconds(_ value: Double) -> Duration {
        .nanoseconds(Int64(saturating: (value * 1e9).rounded()))
    }

    /// "250 ms", "4 s", "1.5 s", "5 min" — how durations appear in logs and status.
    public var humanReadable: String {
        let s = seconds
        if s < 1 { return "\(Int(saturating: (s * 1000).rounded())) ms" }
        if s < 120 {
            let tenths = (s * 10).rounded() / 10
            return tenths == tenths.rounded() ? "\(Int(saturating: tenths)) s" : "\(tenths) s"
        }
        if s < 7200 { return "\(Int(saturating: (s / 60).rounded())) min" }
        return "\(Int(saturating: (s / 3600).rounded())) h"
    }
}
