import Foundation
import Glibc
import TestServers
import Testing

@testable import PoolvisorLinux

/// The guardian's contract with an in-place upgrade: it fires when the last holder of the pipe's write
/// end is gone, not when the process that started it lets go. An exec'd new image keeps the write end
/// (FD_CLOEXEC cleared); here another program holds it, as its stdout.
@Suite struct GuardianTests {
    /// Running, not a zombie (the test process reaps its own children only at the end).
    private func alive(_ pid: Int32) -> Bool {
        guard let state = state(pid) else { return false }
        return state != "Z" && state != "X"
    }

    private func state(_ pid: Int32) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(close, offsetBy: 2)]
    }

    private func reap(_ pid: Int32) -> Int32? {
        var status: Int32 = 0
        var rc: Int32
        repeat { rc = waitpid(pid, &status, 0) } while rc < 0 && errno == EINTR
        return rc == pid ? status : nil
    }

    @Test func itSleepsWhileAnotherProcessHoldsTheWriteEndAndFiresWhenTheLastOneIsGone() throws {
        let spawner = try Spawner(nofileSoft: 1024, useServer: false)
        let guardian = try Guardian(spawner: spawner)
        #expect(guardian.marker.utf8.count == 32)
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        // One process carries the marker, as every spawned process does; one leads a watched process
        // group, as every worker does.
        let marked = try spawnProcess(
            SpawnRequest(argv: ["/bin/sleep", "1000"], environment: ["PATH": "/usr/bin:/bin", Guardian.variable: guardian.marker], stdout: devNull, stderr: devNull))
        let grouped = try spawnProcess(SpawnRequest(argv: ["/bin/sleep", "1000"], stdout: devNull, stderr: devNull, newProcessGroup: true))
        guardian.watch(grouped)
        // The new image: another program with the write end.
        let holder = try spawnProcess(SpawnRequest(argv: ["/bin/sleep", "1000"], stdout: guardian.descriptor, stderr: devNull))
        guardian.relinquish()

        #expect(!poll(timeout: .milliseconds(500)) { !alive(marked) || !alive(grouped) || !alive(guardian.pid) })
        #expect(state(guardian.pid) == "S")
        // The name a new image that cannot read its handover goes by, to leave the guardian alone.
        #expect(ProcessTable.name(of: guardian.pid) == Guardian.processName)

        kill(holder, SIGKILL)
        _ = reap(holder)
        #expect(poll(timeout: .seconds(1)) { !alive(marked) && !alive(grouped) })
        let status = try #require(reap(guardian.pid))
        #expect(status & 0x7f == 0, "the guardian exited by itself")
        #expect((status >> 8) & 0xff == 1, "it killed the marked process (the group went by its group)")
        for pid in [marked, grouped] { _ = reap(pid) }
    }

    @Test func aStopMakesTheLastPassAndSaysHowManyItKilled() throws {
        let spawner = try Spawner(nofileSoft: 1024, useServer: false)
        let guardian = try Guardian(spawner: spawner)
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        let escaped = try spawnProcess(
            SpawnRequest(argv: ["/bin/sleep", "1000"], environment: ["PATH": "/usr/bin:/bin", Guardian.variable: guardian.marker], stdout: devNull, stderr: devNull))
        #expect(guardian.stop() == 1)
        #expect(!alive(escaped))
        _ = reap(escaped)
    }
}
