import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// A timerfd on CLOCK_MONOTONIC armed at one absolute instant — the reconciler's `nextDeadline` —
/// or a fixed interval (the systemd watchdog). Disarmed, it never wakes the loop.
public final class DeadlineTimer {
    public let fd: Int32
    private var armedAt: Instant?

    public init() throws {
        fd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK))
        guard fd >= 0 else { throw SystemError("timerfd_create") }
    }

    deinit { close(fd) }

    /// Arms the timer at `instant` (or disarms it for nil). Does nothing if already armed there.
    public func arm(at instant: Instant?) {
        guard instant != armedAt else { return }
        armedAt = instant
        var spec = itimerspec()
        if let instant {
            let ns = max(instant.nanoseconds, 1)
            spec.it_value = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        }
        timerfd_settime(fd, Int32(TFD_TIMER_ABSTIME), &spec, nil)
    }

    /// Fires every `interval`, starting one interval from now.
    public func repeatEvery(_ interval: Duration) {
        let ns = max(interval.nanosecondsClamped, 1_000_000)
        let ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        var spec = itimerspec(it_interval: ts, it_value: ts)
        timerfd_settime(fd, 0, &spec, nil)
    }

    /// Reads the expiry count so the fd stops being readable; the armed instant is forgotten.
    public func acknowledge() {
        var expirations: UInt64 = 0
        _ = read(fd, &expirations, 8)
        armedAt = nil
    }
}
