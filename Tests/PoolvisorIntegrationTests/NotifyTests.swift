import Foundation
import Glibc
import Testing

/// sd_notify in both directions: poolvisor to its service manager (the test plays systemd), and
/// workers to poolvisor on their own NOTIFY_SOCKET.
@Suite struct NotifyTests {
    @Test func tellsSystemdReadyStatusWatchdogAndStopping() throws {
        let s = try Scenario(
            """
            [pools.default]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            worker_subscribe = "all"
            ready_after_seconds = 0.3
            drain_seconds = 3
            [pools.kb]
            command = ["/bin/sleep", "1000"]
            drain_seconds = 12
            ready_after_seconds = 0
            """)
        let systemd = try NotifyListener(in: s.dir)
        try s.start(environment: ["NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000"])

        let ready = try #require(systemd.waitFor({ $0.contains("READY=1") }, timeout: .seconds(10)))
        // READY=1 carries the STATUS= that says why; before it, STATUS= followed the workers coming up.
        #expect(ready == "READY=1\nSTATUS=2 pools, 3/3 workers ready")
        let beforeReady = systemd.messages.prefix { !$0.contains("READY=1") }
        #expect(beforeReady.contains("STATUS=2 pools, 1/3 workers ready"))
        // WATCHDOG=1 every WATCHDOG_USEC/2 from the event loop.
        #expect(systemd.waitFor({ $0 == "WATCHDOG=1" }, timeout: .seconds(5)) != nil)
        #expect(waitUntil(timeout: .seconds(5)) { systemd.messages.filter { $0 == "WATCHDOG=1" }.count >= 3 })

        #expect(s.stop() == 0)
        // poolvisor has exited; its last datagrams may still wait in the listener's socket.
        #expect(systemd.waitFor({ $0 == "STATUS=stopped" }) != nil)
        let stopping = try #require(systemd.messages.first { $0.hasPrefix("STOPPING=1") })
        #expect(stopping == "STOPPING=1\nSTATUS=stopping: 3 workers draining\nEXTEND_TIMEOUT_USEC=17000000")  // longest drain (12 s) + 5 s
        #expect(systemd.messages.last == "STATUS=stopped")
    }

    @Test func withoutNotifySocketItBehavesTheSameSilently() throws {
        let s = try Scenario(
            """
            [pools.default]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            ready_after_seconds = 0
            """)
        let p = try s.start()
        #expect(p.waitForLine(containing: "the worker is ready"))
        #expect(s.stop() == 0)
    }

    @Test func aNotifyWorkerIsReadyOnlyWhenItSaysSo() throws {
        let s = try Scenario(
            """
            [pools.kb]
            command = \(python(pythonNotify + """
                notify('STATUS=loading model')
                while not os.path.exists(os.environ['GO_FILE']): time.sleep(0.02)
                notify('READY=1\\nSTATUS=serving')
                time.sleep(1000)
                """))
            readiness = "notify"
            worker_subscribe = "all"
            [pools.kb.env]
            GO_FILE = "@DIR@/go"
            """)
        let systemd = try NotifyListener(in: s.dir)
        let p = try s.start(environment: ["NOTIFY_SOCKET": systemd.path])
        #expect(s.waitForWorkers(1))
        let worker = try #require(s.workers.first)
        // The worker got its own socket, not the supervisor's.
        let socket = try #require(worker.env["NOTIFY_SOCKET"])
        #expect(socket == s.dir.path + "/run/poolvisor/notify/kb.0")
        #expect(worker.env["WATCHDOG_USEC"] == nil)
        #expect(waitUntil { systemd.messages.contains { $0.split(separator: "\n").contains("STATUS=1 pool, 0/1 workers ready") } })
        // systemd is asked at the start to wait for poolvisor's own ready timeout (60 s, and 5 s more).
        #expect(systemd.messages.first == "EXTEND_TIMEOUT_USEC=65000000\nSTATUS=1 pool, 0/1 workers ready")
        // Blocked on GO_FILE, the worker cannot have said READY=1, so neither can poolvisor.
        #expect(!systemd.messages.contains { $0.contains("READY=1") })
        #expect(!p.allOutput.contains("is ready"))

        s.dir.write("go", "")
        #expect(systemd.waitFor({ $0 == "READY=1\nSTATUS=1 pool, 1/1 workers ready" }, timeout: .seconds(10)) != nil)
        #expect(p.waitForLine(containing: "worker kb/0 is ready (READY=1)"))
        #expect(s.stop() == 0)
    }

    @Test func aWorkerThatStopsPingingItsWatchdogIsKilledAndRestarted() throws {
        let s = try Scenario(
            """
            [pools.kb]
            command = \(python(pythonNotify + """
                notify('READY=1')
                print('pinging', os.environ['WATCHDOG_USEC'], flush=True)
                for _ in range(3):
                    time.sleep(0.1); notify('WATCHDOG=1')
                print('hanging', flush=True)
                time.sleep(1000)
                """))
            readiness = "notify"
            watchdog_seconds = 0.5
            worker_subscribe = "all"
            """)
        let p = try s.start()
        #expect(p.waitForLine(containing: "kb.0 | pinging 500000"))
        let first = try #require(s.worker("kb", 0))
        #expect(p.waitForLine(containing: "worker kb/0 (pid \(first)) watchdog timeout: no WATCHDOG=1 for 500 ms; sending SIGABRT", timeout: .seconds(10)))
        #expect(p.waitForLine(containing: "worker kb/0 (pid \(first)) exited: watchdog timeout; restarting now"))
        #expect(waitUntil { (s.worker("kb", 0) ?? first) != first })
        #expect(s.stop() == 0)
    }

    @Test func messagesFromOutsideTheWorkersProcessGroupAreIgnored() throws {
        let s = try Scenario(
            """
            [pools.kb]
            command = ["/bin/sleep", "1000"]
            readiness = "notify"
            worker_subscribe = "all"
            """)
        let p = try s.start()
        #expect(s.waitForWorkers(1))
        let socket = try #require(s.workers.first?.env["NOTIFY_SOCKET"])
        try NotifyListener.send("READY=1", to: socket)  // from the test process: not the worker's
        #expect(p.waitForLine(containing: "ignored a message on kb/0's NOTIFY_SOCKET from pid \(getpid())"))
        #expect(!p.allOutput.contains("is ready"))
        #expect(s.stop() == 0)
    }
}
