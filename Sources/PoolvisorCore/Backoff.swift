extension BackoffPolicy {
    /// The delay before restarting a worker whose slot has had `streak` earlier consecutive exits.
    /// 0 → immediately; 1 → `initial`; then doubling up to `max`. `unit` in [0, 1) picks the jitter.
    public func delay(afterConsecutiveExits streak: Int, unit: Double) -> Duration {
        guard streak > 0 else { return .zero }
        let base = initial.seconds * pow2(streak - 1)
        let capped = Swift.min(base, max.seconds)
        let factor = 1 + jitter * (2 * unit - 1)
        return .seconds(Swift.min(capped * factor, max.seconds))
    }

    private func pow2(_ n: Int) -> Double {
        n >= 62 ? Double.greatestFiniteMagnitude : Double(1 << n)
    }
}

/// A small deterministic random generator (SplitMix64) so that jitter is reproducible in tests.
public struct SplitMix64: RandomNumberGenerator, Sendable, Codable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
