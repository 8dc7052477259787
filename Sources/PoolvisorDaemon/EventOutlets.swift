import PoolvisorControl
import PoolvisorCore
import PoolvisorLinux
import PoolvisorScalers
import PoolvisorSystem

/// Where the lifecycle events go: the ring `poolvisor events` reads and the connections following it,
/// the journal under systemd, and Redis with `[supervisor.redis_events]` (which also takes the
/// workers' heartbeats). Each event is stamped with the wall clock once, here.
final class EventOutlets {
    /// The ring; an in-place upgrade hands it to the new image.
    var log = EventLog()
    private let journal = JournalEvents()
    /// `[supervisor.redis_events]`, once the daemon has started it.
    var redis: RedisEvents?
    /// The control socket, for `events --follow`.
    weak var control: ControlServer?

    /// Records `event`; `queues` are its pool's, for the Redis stream's `queue` field.
    func record(_ event: LifecycleEvent, queues: [String], instance: String) {
        let time = WallClock.seconds(at: event.at, monotonicNow: MonotonicClock.now(), wallNow: WallClock.now())
        log.append(event, time: time)
        guard let entry = log.last else { return }
        if let redis {
            var fields: [(String, String)] = [("type", event.kind.rawValue), ("timestamp", EventLog.Entry.rfc3339(time))]
            if let pool = event.pool {
                fields.append(("pool", pool))
                fields.append(("queue", queues.joined(separator: ",")))
            }
            if let replica = event.replica { fields.append(("replica", String(replica))) }
            if let pid = event.pid { fields.append(("pid", String(pid))) }
            if let detail = event.detail { fields.append(("reason", detail)) }
            fields.append(("instance", instance))
            redis.publish(fields)
        }
        if let journal {
            let place = event.pool.map { " " + $0 + (event.replica.map { "/\($0)" } ?? "") } ?? ""
            journal.send(event, message: "event \(event.kind.rawValue)\(place)\(event.detail.map { ": \($0)" } ?? "")")
        }
        if let control, control.followerCount > 0 {
            var bytes: [UInt8] = []
            JSON.object(["v": .int(ControlProtocol.version), "event": entry.json]).serialize(into: &bytes)
            control.broadcast(bytes, pool: event.pool)
        }
    }

    /// The answer to `events`: those of the last `since` seconds (all when nil), of one pool if given.
    func answer(pool: String?, since: Double?) -> JSON {
        let from = since.map { WallClock.now() - $0 }
        return .object(["v": .int(ControlProtocol.version), "ok": true, "events": .array(log.entries(since: from, pool: pool).map(\.json))])
    }

    /// The workers' heartbeat hashes and busy-key reads, to Redis.
    func heartbeat(_ beats: [WorkerBeat]) {
        guard let redis else { return }
        let now = MonotonicClock.now()
        let wall = WallClock.now()
        let hashes = beats.map { b in
            (
                key: b.key,
                fields: [
                    ("pid", String(b.pid)), ("state", b.state),
                    ("started", EventLog.Entry.rfc3339(WallClock.seconds(at: b.startedAt, monotonicNow: now, wallNow: wall))),
                    ("restarts", String(b.restarts)), ("busy", b.busy.map { $0 ? "1" : "0" } ?? ""),
                ]
            )
        }
        redis.heartbeat(hashes, busyKeys: beats.compactMap { b in b.busyKey.map { (b.pid, $0) } })
    }
}
