/// Double → integer conversions that never trap. `Int(x)` traps when `x` is infinite, NaN or out of
/// range; numbers reach the core from a pools file or a queue reading, so arithmetic on them must
/// clamp instead: NaN becomes 0, anything beyond the type's range its nearest bound.
extension FixedWidthInteger where Self: SignedInteger {
    public init(saturating x: Double) {
        if x.isNaN {
            self = 0
        } else if x >= Double(Self.max) {
            // Double(Int64.max) rounds up to 2^63, which no Int64 holds: compare with >=.
            self = Self.max
        } else if x <= Double(Self.min) {
            self = Self.min
        } else {
            self = Self(x)
        }
    }
}
