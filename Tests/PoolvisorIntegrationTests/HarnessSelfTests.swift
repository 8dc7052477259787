import Foundation
import Glibc
import Testing

/// Checks the integration-test harness itself, without the poolvisor binary.
@Suite("Harness self-tests")
struct HarnessSelfTests {
    @Test func procFSReadsTheTestProcess() throws {
        let me = getpid()
        let stat = try #require(ProcFS.stat(of: me))
        #expect(stat.pid == me)
        #expect(stat.ppid == getppid())
        #expect(ProcFS.parent(of: me) == getppid())
        #expect(ProcFS.processGroup(of: me) == getpgrp())
        #expect(ProcFS.session(of: me) == getsid(0))
        #expect(ProcFS.isAlive(me))
        // /proc/PID/stat describes the main thread, which may be asleep while a worker thread runs us.
        #expect(["R", "S"].contains(ProcFS.state(of: me)))
        #expect(ProcFS.executable(of: me) == ProcFS.readLink("/proc/self/exe"))
        #expect((ProcFS.rssKiB(of: me) ?? 0) > 0)
        #expect(ProcFS.cpuTicks(of: me) != nil)
        #expect(ProcFS.commandLine(of: me)?.isEmpty == false)
        let env = try #require(ProcFS.environment(of: me))
        #expect(env["PATH"] != nil)
        #expect(ProcFS.signalMask(of: me) != nil)
        #expect(ProcFS.ignoredSignals(of: me) != nil)
        #expect(ProcFS.threads(of: me).contains(me))  // the main thread; not necessarily first once pids wrap
        #expect((ProcFS.threadCount(of: me) ?? 0) >= 1)
        #expect(!ProcFS.isAlive(-1))
        #expect(ProcFS.stat(of: Int32.max) == nil)
    }

    @Test func perThreadSignalMask() throws {
        let me = getpid()
        let tid = try #require(ProcFS.currentThreadID())
        #expect(ProcFS.threads(of: me).contains(tid))
        var add = sigset_t()
        sigemptyset(&add)
        sigaddset(&add, SIGUSR2)
        var saved = sigset_t()
        pthread_sigmask(SIG_BLOCK, &add, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        let mask = try #require(ProcFS.signalMask(of: me, thread: tid))
        #expect(ProcFS.mask(mask, contains: SIGUSR2))
        #expect(ProcFS.signals(in: mask).contains(SIGUSR2))
    }

    @Test func statParsingToleratesParenthesesAndSpacesInComm() throws {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 15 -5 1 0 555 0 0"
        let stat = try #require(ProcFS.parseStat(line))
        #expect(stat.comm == "a) b (c)")
        #expect(stat.state == "S")
        #expect(stat.ppid == 1)
        #expect(stat.pgrp == 4242)
        #expect(stat.utime + stat.stime == 10)
        #expect(stat.nice == -5)
        #expect(stat.numThreads == 1)
        #expect(stat.startTime == 555)
    }

    @Test func spawnedSleepIsObservableAndKillable() throws {
        let dir = try TempDir()
        let marker = dir.write("marker", "x")
        let sleeper = try PoolvisorProcess(
            executable: "/bin/sleep", arguments: ["30"], environment: ["HARNESS_MARKER": marker])
        let me = getpid()
        #expect(ProcFS.children(of: me).contains(sleeper.pid))
        #expect(waitUntil { ProcFS.commandLine(of: sleeper.pid) == ["/bin/sleep", "30"] })
        let env = try #require(ProcFS.environment(of: sleeper.pid))
        #expect(env == ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "HARNESS_MARKER": marker])
        #expect(ProcFS.parent(of: sleeper.pid) == me)
        #expect(ProcFS.processGroup(of: sleeper.pid) == getpgrp())
        #expect(ProcFS.isAlive(sleeper.pid))
        #expect(sleeper.isRunning)
        // The runner's blocked signals must not leak into the child.
        #expect(ProcFS.signalMask(of: sleeper.pid) == 0)
        #expect(ProcFS.ignoredSignals(of: sleeper.pid) == 0)
        // Only stdin (/dev/null), stdout and stderr (pipes) are inherited.
        let fds = try #require(ProcFS.openFileDescriptors(of: sleeper.pid))
        #expect(fds.keys.sorted() == [0, 1, 2])
        #expect(fds[0] == "/dev/null")

        #expect(ProcFS.caughtSignals(of: sleeper.pid) == 0)

        #expect(sleeper.waitForExit(timeout: .milliseconds(50)) == nil)
        sleeper.signal(SIGTERM)
        #expect(sleeper.waitForExit(timeout: .seconds(10)) == 128 + SIGTERM)
        #expect(sleeper.exitStatus == .signaled(SIGTERM))
        #expect(!ProcFS.isAlive(sleeper.pid))
        #expect(!sleeper.isRunning)
        #expect(!ProcFS.children(of: me).contains(sleeper.pid))
    }

    @Test func terminateKillsTheWholeTree() throws {
        let shell = try PoolvisorProcess(
            executable: "/bin/sh",
            arguments: ["-c", "echo started; echo oops >&2; /bin/sleep 30 & /bin/sleep 31 & wait"])
        #expect(shell.waitForLine(containing: "started", timeout: .seconds(10)))
        #expect(shell.waitForLine(containing: "oops", timeout: .seconds(10)))
        #expect(shell.stdoutLines == ["started"])
        #expect(shell.stderrLines == ["oops"])
        expectEventually("two sleeps under the shell") { shell.descendants.count == 2 }
        let tree = shell.descendants
        for pid in tree { #expect(ProcFS.isAlive(pid)) }

        shell.terminate()
        #expect(shell.exitStatus == .signaled(SIGKILL))
        expectEventually("the sleeps die") { tree.allSatisfy { !ProcFS.isAlive($0) } }
        #expect(shell.waitForOutputEnd(timeout: .seconds(10)))
        #expect(!shell.waitForLine(containing: "never printed", timeout: .milliseconds(10)))
    }

    @Test func droppingTheProcessKillsTheTree() throws {
        var tree: [Int32] = []
        var pid: Int32 = 0
        do {
            let shell = try PoolvisorProcess(
                executable: "/bin/sh", arguments: ["-c", "/bin/sleep 30 & /bin/sh -c '/bin/sleep 32' & wait"])
            pid = shell.pid
            expectEventually("sleep, sh and its sleep") { shell.descendants.count == 3 }
            tree = shell.descendants
        }  // deinit: terminate()
        #expect(!ProcFS.isAlive(pid))
        #expect(!ProcFS.children(of: getpid()).contains(pid))  // reaped, not a zombie
        expectEventually("the whole tree dies") { tree.allSatisfy { !ProcFS.isAlive($0) } }
    }

    @Test func ignoredSignalsAreVisible() throws {
        let shell = try PoolvisorProcess(
            executable: "/bin/sh", arguments: ["-c", "trap '' USR1; echo trapped; exec /bin/sleep 30"])
        #expect(shell.waitForLine(containing: "trapped", timeout: .seconds(10)))
        expectEventually("sh execs sleep") { ProcFS.comm(of: shell.pid) == "sleep" }
        let ignored = try #require(ProcFS.ignoredSignals(of: shell.pid))
        #expect(ProcFS.signals(in: ignored) == [SIGUSR1])
        #expect(shell.kill() == 128 + SIGKILL)
        #expect(!shell.isRunning)
    }

    @Test func exitCodeAndOutputOfAShortCommand() throws {
        let process = try PoolvisorProcess(executable: "/bin/sh", arguments: ["-c", "printf 'a\\nb\\nno-newline'; exit 3"])
        #expect(process.waitForExit(timeout: .seconds(10)) == 3)
        #expect(process.waitForOutputEnd(timeout: .seconds(10)))
        #expect(process.stdoutLines == ["a", "b", "no-newline"])
        #expect(process.allOutput == "a\nb\nno-newline")
    }

    @Test func notifyListenerReceivesDatagrams() throws {
        let dir = try TempDir()
        let listener = try NotifyListener(in: dir)
        #expect(listener.path == dir.path + "/notify.sock")
        #expect(listener.messages.isEmpty)

        try NotifyListener.send("READY=1\nSTATUS=3 pools, 7/7 workers ready", to: listener.path)
        try NotifyListener.send("STATUS=reloading", to: listener.path)
        let ready = listener.waitFor({ $0.hasPrefix("READY=1") }, timeout: .seconds(10))
        #expect(ready == "READY=1\nSTATUS=3 pools, 7/7 workers ready")
        let reloading = try #require(listener.waitFor(field: "STATUS=reloading", timeout: .seconds(10)))
        #expect(reloading.senderPID == getpid())
        #expect(listener.contains(field: "READY=1"))
        #expect(!listener.contains(field: "READY"))
        #expect(listener.latestValue(of: "STATUS") == "reloading")
        #expect(listener.messages.count == 2)
        #expect(listener.waitFor({ $0 == "STOPPING=1" }, timeout: .milliseconds(20)) == nil)

        // More datagrams than the kernel queues for an undrained socket (max_dgram_qlen, 10 by default).
        for i in 0..<50 { try NotifyListener.send("N=\(i)", to: listener.path) }
        #expect(listener.waitFor(field: "N=49", timeout: .seconds(10)) != nil)
        #expect(listener.messages.count == 52)
    }

    @Test func tempDirWritesAndRemoves() throws {
        let dir = try TempDir()
        let path = dir.path
        #expect(path.hasPrefix("/tmp/poolvisor-test-"))
        let script = dir.write("bin/worker.sh", "#!/bin/sh\nexit 0\n", mode: 0o755)
        #expect(script == path + "/bin/worker.sh")
        #expect(access(script, X_OK) == 0)
        #expect(dir.read("bin/worker.sh") == "#!/bin/sh\nexit 0\n")
        var info = stat()
        #expect(lstat(script, &info) == 0 && info.st_mode & 0o777 == 0o755)
        dir.remove()
        #expect(access(path, F_OK) != 0)
        dir.remove()  // idempotent
    }

    @Test func binaryLocation() throws {
        let path = Harness.poolvisorBinary
        #expect(try Harness.requirePoolvisorBinary() == path)
        #expect(path.hasSuffix("/poolvisor"))
        if ProcessInfo.processInfo.environment["POOLVISOR_BIN"] == nil {
            let runnerDirectory = ((ProcFS.readLink("/proc/self/exe") ?? "") as NSString).deletingLastPathComponent
            #expect(
                (path as NSString).deletingLastPathComponent == runnerDirectory
                    || path.hasSuffix("/.build/debug/poolvisor"))
        }
    }
}
