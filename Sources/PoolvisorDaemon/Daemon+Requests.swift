import Glibc
import PoolvisorControl
import PoolvisorCore
import PoolvisorLinux
import PoolvisorSystem

/// What operators and monitoring ask a running daemon: control socket requests, status, scrapes.
extension Daemon {
    /// One request from the control socket → one answer line.
    func control(_ line: ArraySlice<UInt8>, _ access: ControlServer.Access, _ peer: ControlServer.Peer) -> [UInt8] {
        let answer: JSON
        switch ControlProtocol.Request.parse(line) {
        case .failure(let error):
            answer = ControlProtocol.error(error.message)
        case .success(let request) where !request.isReadOnly && access != .full:
            logger.warning(
                "refused '\(request.json["command"]?.string ?? "?")' from uid \(peer.uid) (pid \(peer.pid)) on the control socket: members of control_group may only read status")
            answer = ControlProtocol.error("permission denied: only root or the user poolvisor runs as may do that; members of control_group may only read status")
        case .success(.status(let pool)):
            if let pool, reconciler.pool(named: pool) == nil {
                answer = ControlProtocol.error("no pool '\(pool)'\(Suggestion.didYouMean(pool, reconciler.pools.map(\.spec.name)))")
                break
            }
            let bytes = ControlProtocol.response(status(pool: pool), reservingCapacity: pool == nil ? lastStatusSize : 0)
            if pool == nil { lastStatusSize = bytes.count + bytes.count / 8 }
            return bytes
        case .success(.reload):
            logger.notice("reload requested by uid \(peer.uid) (pid \(peer.pid)) on the control socket")
            answer = ControlProtocol.response(reload())
        case .success(.scale(let pool, let replicas)):
            logger.notice("scale \(pool) to \(replicas) requested by uid \(peer.uid) (pid \(peer.pid))")
            answer = ControlProtocol.response(perform(.scale(pool: pool, replicas: replicas)))
        case .success(.restart(let pool)):
            logger.notice("restart of \(pool) requested by uid \(peer.uid) (pid \(peer.pid))")
            answer = ControlProtocol.response(perform(.restart(pool: pool)))
        case .success(.events(let pool, let since, let follow)):
            if follow { control?.followCurrentRequest(pool: pool) }
            answer = outlets.answer(pool: pool, since: since)
        case .success(.runJob(let job)):
            logger.notice("run-job \(job) requested by uid \(peer.uid) (pid \(peer.pid))")
            answer = ControlProtocol.response(perform(.runJob(job)))
        case .success(.upgrade(let binary)):
            logger.notice("upgrade\(binary.map { " to \($0)" } ?? "") requested by uid \(peer.uid) (pid \(peer.pid))")
            answer = ControlProtocol.response(requestUpgrade(binary: binary))
        }
        var bytes: [UInt8] = []
        answer.serialize(into: &bytes)
        return bytes
    }

    /// CPU and memory of the workers of one pool (or all): from their cgroups, or their process trees.
    /// - Parameter budget: how long reading /proc may take (the reader's own 25 ms when nil).
    func measuredUsage(pool: String?, budget: Duration? = nil) -> [Int32: ProcessUsage] {
        var groups = Set<Int32>()
        for p in reconciler.pools where pool == nil || p.spec.name == pool {
            groups.formUnion(p.workers.keys)
        }
        var measured = cgroups?.usage(of: groups) ?? [:]
        let rest = groups.subtracting(measured.keys)
        if !rest.isEmpty { measured.merge(usage.usage(of: rest, budget: budget)) { a, _ in a } }
        return measured
    }

    static let scrapeReadingBudget = Duration.milliseconds(5)

    /// The Prometheus exposition for a scrape.
    func scrape() -> [UInt8] {
        // A scrape keeps within ~10 ms at 1000 workers: /proc is read for 5 ms of it, oldest readings
        // first, so each worker's CPU and memory are at most a few scrapes old.
        let measured = measuredUsage(pool: nil, budget: Self.scrapeReadingBudget)
        let now = MonotonicClock.now()
        let wall = WallClock.now()
        return metrics.exposition(reconciler, now: now, redisDropped: outlets.redis?.dropped ?? 0, usage: { measured[$0] }) {
            WallClock.seconds(at: $0, monotonicNow: now, wallNow: wall)
        }
    }

    func status(pool: String?) -> StatusReport {
        let measured = measuredUsage(pool: pool)
        var report = reconciler.statusReport(
            at: MonotonicClock.now(), version: options.version, pid: getpid(), pool: pool,
            warnings: fileLimitWarning().map { [$0] } ?? []
        ) { measured[$0] }
        report.supervisor.upgradeRefusals = upgradeRefusals
        report.supervisor.upgradeRefused = upgradeRefused
        return report
    }
}
