import Glibc
import PoolvisorCore
import Testing

@testable import PoolvisorLinux

// The usage `status` shows, read from /proc for a real process that spins on a CPU.
@Suite(.serialized) struct ProcessUsageReaderTests {
    @Test func aReadingYoungerThanASecondIsGivenAgainAndAnOlderOneIsReadAnew() throws {
        let spinner = try Spinner()
        defer { spinner.stop() }
        let reused = ProcessUsageReader(reuseFor: .seconds(3600))
        let fresh = ProcessUsageReader(reuseFor: .zero)
        let first = try #require(reused.usage(of: [spinner.pid])[spinner.pid])
        #expect(first.rssBytes > 0)
        // Wait until the spinner has used more CPU than the first reading says, by the kernel's count.
        #expect(waitFor(.seconds(10)) { (fresh.usage(of: [spinner.pid])[spinner.pid]?.cpuSeconds ?? 0) > first.cpuSeconds + 0.05 })
        // The reader that may reuse gives the first reading back, CPU % and all; the other reads anew.
        #expect(reused.usage(of: [spinner.pid])[spinner.pid] == first)
        let later = try #require(fresh.usage(of: [spinner.pid])[spinner.pid])
        #expect(later.cpuSeconds > first.cpuSeconds)
    }

    @Test func aWorkerNoLongerAskedForIsForgotten() throws {
        let spinner = try Spinner()
        defer { spinner.stop() }
        let reader = ProcessUsageReader(reuseFor: .seconds(3600))
        let first = try #require(reader.usage(of: [spinner.pid])[spinner.pid])
        _ = reader.usage(of: [])
        #expect(waitFor(.seconds(10)) { (ProcessUsageReader(reuseFor: .zero).usage(of: [spinner.pid])[spinner.pid]?.cpuSeconds ?? 0) > first.cpuSeconds + 0.05 })
        #expect(try #require(reader.usage(of: [spinner.pid])[spinner.pid]).cpuSeconds > first.cpuSeconds)
    }
}

/// `/bin/sh -c 'while :; do :; done'`, killed and reaped by `stop`.
private final class Spinner {
    let pid: pid_t

    init() throws {
        let words = ["/bin/sh", "-c", "while :; do :; done"]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", nil, nil, argv, [nil])
        guard rc == 0 else { throw SystemError("posix_spawn /bin/sh", errno: rc) }
        self.pid = pid
    }

    func stop() {
        guard kill(pid, SIGKILL) == 0 else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}

private func waitFor(_ timeout: Duration, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(10_000)  // polling interval of the condition, not a synchronisation
    }
    return condition()
}
