/// When a scaler client may try to connect again after a failed connection attempt: 0.5 s after the
/// first failure, doubling up to 30 s, back to nothing after a successful connection. Calls made before
/// the retry time fail at once with "reconnecting in 2 s: <the last error>" instead of waiting for a
/// server that was just found down.
public struct ReconnectBackoff: Sendable, Equatable {
    public var policy: BackoffPolicy
    /// Consecutive failed connection attempts.
    public private(set) var failures = 0
    /// No attempt before this instant (nil: go ahead).
    public private(set) var retryAt: Instant?
    /// Why the last attempt failed.
    public private(set) var lastError: String?

    public init(initial: Duration = .milliseconds(500), max: Duration = .seconds(30)) {
        policy = BackoffPolicy(initial: initial, max: max, resetAfter: .zero, jitter: 0)
    }

    /// nil when a connection may be attempted at `now`; otherwise the error to return at once.
    public func waiting(at now: Instant) -> ScalerError? {
        guard let retryAt, now < retryAt else { return nil }
        let remaining = retryAt.since(now)
        return ScalerError("reconnecting in \(remaining.humanReadable): \(lastError ?? "the last attempt failed")")
    }

    /// A connection attempt failed at `now` with `message` (already free of secrets).
    public mutating func connectFailed(_ message: String, at now: Instant) {
        failures += 1
        lastError = message
        retryAt = now + policy.delay(afterConsecutiveExits: failures, unit: 0.5)
    }

    /// A connection was established: the next failure starts again from the initial delay.
    public mutating func connected() {
        failures = 0
        retryAt = nil
        lastError = nil
    }
}
