import Glibc
import PoolvisorConfig
import PoolvisorCore
import Testing

@testable import PoolvisorControl
@testable import PoolvisorDaemon
@testable import PoolvisorLinux
@testable import PoolvisorScalers
@testable import PoolvisorSystem

// The usage `status` shows, read from /proc for a real process that spins on a CPU.
@Suite(.serialized) struct ProcessUsageReaderTests {
    @Test func aReadingYoungerThanASecondIsGivenAgainAndAnOlderOneIsReadAnew() throws {
        let spinner = try Spinner()
        defer { spinner.stop() }
        let reused = ProcessUsageReader(reuseFor: .seconds(3600))
        let fresh = ProcessUsageReader(reuseFor: .zero)
        let first = try #require(reused.usage(of: [spinner.pid])[spinner.pid])
        // Wait until the spinner has used more CPU than the first reading says, by the kernel's count.
        #expect(poll(timeout: .seconds(10)) { (fresh.usage(of: [spinner.pid])[spinner.pid]?.cpuSeconds ?? 0) > first.cpuSeconds + 0.05 })
        // The reader that may reuse gives the first reading back, CPU % and all; the other reads anew.
        #expect(reused.usage(of: [spinner.pid])[spinner.pid] == first)
        let later = try #require(fresh.usage(of: [spinner.pid])[spinner.pid])
        #expect(later.cpuSeconds > first.cpuSeconds)
        #expect(later.rssBytes > 0)  // read once it has run (right after its exec it may have none)
    }

    @Test func aWorkerNoLongerAskedForIsForgotten() throws {
        let spinner = try Spinner()
        defer { spinner.stop() }
        let reader = ProcessUsageReader(reuseFor: .seconds(3600))
        let first = try #require(reader.usage(of: [spinner.pid])[spinner.pid])
        _ = reader.usage(of: [])
        #expect(poll(timeout: .seconds(10)) { (ProcessUsageReader(reuseFor: .zero).usage(of: [spinner.pid])[spinner.pid]?.cpuSeconds ?? 0) > first.cpuSeconds + 0.05 })
        #expect(try #require(reader.usage(of: [spinner.pid])[spinner.pid]).cpuSeconds > first.cpuSeconds)
    }
}

/// `/bin/sh -c 'while :; do :; done'`, killed and reaped by `stop`.
private final class Spinner {
    let pid: pid_t

    init() throws {
        pid = try spawn(["/bin/sh", "-c", "while :; do :; done"])
    }

    func stop() {
        guard kill(pid, SIGKILL) == 0 else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}
