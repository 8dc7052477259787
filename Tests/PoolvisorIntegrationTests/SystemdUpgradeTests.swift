import Foundation
import Glibc
import Testing

/// `poolvisor upgrade` under a real systemd 252 (the sandbox): the unit stays active with the same
/// MainPID and workers, and systemd saw RELOADING=1 (the unit `reloading`) then READY=1 (`active`).
///
/// The new image's takeover lasts about 60 ms, too short to catch the `reloading` state by asking
/// systemctl. So the upgrade goes first to a gate: a bash script that, run as `run …` (the exec of the
/// handover), waits on a FIFO until the test has seen the unit `reloading`, then execs the real binary
/// in the same process. Run as `handover-formats` (the check) it execs the binary at once.
@Suite(.serialized) struct SystemdUpgradeTests {
    static let gate = """
        #!/bin/bash
        # The pid stays: bash execs poolvisor in the same process. {fd} takes a free descriptor above 9,
        # so none of those poolvisor handed over is touched. No fork: a child reaped by bash would be a
        # worker's exit lost to poolvisor.
        if [ "$1" = run ]; then
            exec {gate}<>/run/pv-upgrade-gate
            read -r -t 60 -u "$gate" _
            exec {gate}<&-
        fi
        exec /usr/local/bin/poolvisor "$@"
        """

    @Test(.enabled(if: SystemdTests.available, "needs root and ../shared/systemd-sandbox/sdsandbox"))
    func upgradeKeepsTheUnitItsMainPIDAndWorkersAndSystemdSeesReloadingThenReady() throws {
        let name = "pvupgrade\(getpid())"
        defer { _ = try? SystemdTests.sd(name, "down") }
        try #require(SystemdTests.sd(name, "up").status == 0)
        let dir = try TempDir()
        let pools = dir.write(
            "pools.toml",
            """
            [supervisor]
            name = "sdupgrade"
            [pools.default]
            command = ["/bin/sleep", "100018"]
            replicas = 3
            worker_subscribe = "all"
            ready_after_seconds = 0.2
            [pools.talk]
            command = ["/bin/sh", "-c", "echo hello; exec /bin/sleep 100018"]
            ready_after_seconds = 0.2
            """)
        try SystemdTests.install(name, pools: ["/etc/poolvisor/pools.toml": pools])
        try #require(SystemdTests.sd(name, "cp", dir.write("gate", Self.gate, mode: 0o755), "/usr/local/bin/poolvisor-gated", "0755").status == 0)
        try #require(SystemdTests.sd(name, "exec", "mkfifo", "/run/pv-upgrade-gate").status == 0)

        #expect(try SystemdTests.sd(name, "systemctl", "start", "poolvisor").status == 0)
        #expect(try SystemdTests.show(name, "StatusText") == "2 pools, 4/4 workers ready")
        let mainPID = try SystemdTests.show(name, "MainPID")
        let workers = { (try? SystemdTests.sd(name, "exec", "pgrep", "-f", "sleep 100018$").output.split(separator: "\n").sorted()) ?? [] }
        let before = workers()
        #expect(before.count == 4)
        let upgrades = { () -> Int? in
            let out = (try? SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "status", "--json").output) ?? ""
            let json = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
            return ((json?["supervisor"] as? [String: Any])?["upgrades"] as? NSNumber)?.intValue
        }
        #expect(upgrades() == 0)

        // The upgrade, as an operator types it, runs while the test watches the unit.
        let upgrade = try PoolvisorProcess(
            executable: SystemdTests.sandbox,
            arguments: ["exec", "/usr/local/bin/poolvisor", "upgrade", "--binary", "/usr/local/bin/poolvisor-gated"],
            environment: ["SDSANDBOX_NAME": name, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        // RELOADING=1: systemd puts the unit in `reloading`, with the STATUS= that came with it.
        var seen: [String] = []
        #expect(
            expectEventually("the unit never went to reloading; seen \(seen)", timeout: .seconds(30)) {
                let state = (try? SystemdTests.show(name, "ActiveState")) ?? ""
                if seen.last != state { seen.append(state) }
                return state == "reloading"
            })
        #expect(try SystemdTests.show(name, "StatusText") == "upgrading: handing over to /usr/local/bin/poolvisor-gated")
        #expect(try SystemdTests.show(name, "MainPID") == mainPID)
        // Let the new image take over; its READY=1 puts the unit back to `active`.
        #expect(try SystemdTests.sd(name, "exec", "sh", "-c", "echo go > /run/pv-upgrade-gate").status == 0)
        #expect(upgrade.waitForExit(timeout: .seconds(60)) == 0, "poolvisor upgrade: \(upgrade.stdoutLines + upgrade.stderrLines)")
        #expect(upgrade.stdoutLines.contains { $0.hasPrefix("poolvisor ") && $0.hasSuffix("took over, pid \(mainPID)") }, "\(upgrade.stdoutLines)")
        #expect(expectEventually(timeout: .seconds(10)) { (try? SystemdTests.show(name, "ActiveState")) == "active" })
        #expect(try SystemdTests.show(name, "SubState") == "running")
        #expect(expectEventually(timeout: .seconds(10)) { (try? SystemdTests.show(name, "StatusText")) == "2 pools, 4/4 workers ready" })
        #expect(try SystemdTests.show(name, "MainPID") == mainPID)
        #expect(try SystemdTests.show(name, "NRestarts") == "0")
        #expect(workers() == before)
        #expect(upgrades() == 1)

        // Without --binary: the binary installed where the running one was started from. Then SIGUSR2,
        // as `systemctl kill` sends it to the main process only.
        let again = try SystemdTests.sd(name, "exec", "/usr/local/bin/poolvisor", "upgrade")
        #expect(again.status == 0, "\(again.output)")
        #expect(upgrades() == 2)
        #expect(try SystemdTests.sd(name, "systemctl", "kill", "--kill-who=main", "--signal=SIGUSR2", "poolvisor").status == 0)
        #expect(expectEventually(timeout: .seconds(20)) { upgrades() == 3 })
        #expect(expectEventually(timeout: .seconds(10)) { (try? SystemdTests.show(name, "ActiveState")) == "active" })
        #expect(try SystemdTests.show(name, "MainPID") == mainPID)
        #expect(workers() == before)

        // The journal has the handover and the takeovers; the talking worker's line came once, before.
        let journal = try SystemdTests.sd(name, "journalctl", "-u", "poolvisor", "--no-pager", "-o", "cat").output
        #expect(journal.contains("exec /usr/local/bin/poolvisor-gated"))
        #expect(journal.components(separatedBy: "took over from").count - 1 == 3)
        let talk = try SystemdTests.sd(name, "journalctl", "-u", "poolvisor", "-t", "talk", "--no-pager", "-o", "cat").output
        #expect(talk.split(separator: "\n").filter { $0 == "hello" }.count == 1)

        // And the unit still stops cleanly, its workers with it.
        #expect(try SystemdTests.sd(name, "systemctl", "stop", "poolvisor").status == 0)
        #expect(try SystemdTests.show(name, "Result") == "success")
        #expect(workers().isEmpty)
    }
}
