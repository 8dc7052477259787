import PoolvisorControl
import PoolvisorCore

/// The last lifecycle events, for `poolvisor events`: a ring of `capacity` (older ones are dropped),
/// each stamped with the wall clock when it was recorded and a sequence number.
public struct EventLog: Codable, Sendable {
    struct Entry: Codable, Sendable {
        var seq: UInt64
        /// Seconds since the epoch.
        var time: Double
        var event: LifecycleEvent
    }

    static let capacity = 10_000

    private var ring: [Entry] = []
    private var next = 0
    private(set) var recorded: UInt64 = 0

    mutating func append(_ event: LifecycleEvent, time: Double) {
        recorded += 1
        let entry = Entry(seq: recorded, time: time, event: event)
        if ring.count < Self.capacity {
            ring.append(entry)
        } else {
            ring[next] = entry
            next = (next + 1) % Self.capacity
        }
    }

    /// The newest entry.
    var last: Entry? { ring.isEmpty ? nil : ring[(next + ring.count - 1) % ring.count] }

    /// Oldest first: those at or after `since` (seconds since the epoch), of one pool (or job) if given.
    func entries(since: Double?, pool: String?) -> [Entry] {
        let ordered = ring.count < Self.capacity ? ring : Array(ring[next...] + ring[..<next])
        return ordered.filter { e in (since.map { e.time >= $0 } ?? true) && (pool == nil || e.event.pool == pool) }
    }
}

extension EventLog.Entry {
    /// The documented JSON form of an event (README, "poolvisor events").
    var json: JSON {
        var o: JSONObject = ["seq": .int(Int64(seq)), "time": .string(Self.rfc3339(time)), "type": .string(event.kind.rawValue)]
        o["pool"] = event.pool.map { .string($0) } ?? .null
        o["replica"] = event.replica.map { .int(Int64($0)) } ?? .null
        o["pid"] = event.pid.map { .int(Int64($0)) } ?? .null
        o["detail"] = event.detail.map { .string($0) } ?? .null
        return .object(o)
    }

    /// 2026-12-03T08:55:01.123Z
    static func rfc3339(_ seconds: Double) -> String {
        let whole = Int64(seconds.rounded(.down))
        let millis = Int((seconds - Double(whole)) * 1000)
        guard let t = CivilTime(secondsSinceEpoch: whole - whole % 60) else { return String(seconds) }
        func pad(_ n: Int, _ w: Int) -> String { String(repeating: "0", count: max(w - String(n).count, 0)) + String(n) }
        return "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2))T\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(Int(whole % 60), 2)).\(pad(millis, 3))Z"
    }
}
