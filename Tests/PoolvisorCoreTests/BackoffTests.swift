import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

@Suite struct BackoffTests {
    let policy = BackoffPolicy(initial: .seconds(1), max: .seconds(300), resetAfter: .seconds(600), jitter: 0)

    @Test func firstExitAfterAStableRunRestartsImmediately() {
        #expect(policy.delay(afterConsecutiveExits: 0, unit: 0.9) == .zero)
    }

    @Test func consecutiveExitsDoubleFromInitialUpToMax() {
        let delays = (1...12).map { policy.delay(afterConsecutiveExits: $0, unit: 0.5).seconds }
        #expect(delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300])
        #expect(policy.delay(afterConsecutiveExits: 5000, unit: 0.5) == .seconds(300))
    }

    @Test func jitterStaysWithinTenPercentAndNeverPassesMax() {
        let jittered = BackoffPolicy(initial: .seconds(1), max: .seconds(300), resetAfter: .seconds(600), jitter: 0.1)
        #expect(jittered.delay(afterConsecutiveExits: 3, unit: 0).seconds == 3.6)
        #expect(abs(jittered.delay(afterConsecutiveExits: 3, unit: 0.999_999).seconds - 4.4) < 0.001)
        #expect(jittered.delay(afterConsecutiveExits: 20, unit: 0.999).seconds == 300)
    }
}
