import PoolvisorControl
import PoolvisorCore

/// The last lifecycle events, for `poolvisor events`: a ring of `capacity` (older ones are dropped),
/// each stamped with the wall clock when it was recorded and a sequence number.
public struct EventLog: Sendable {
    struct Entry: Sendable {
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

    init() {}

    // MARK: - In an upgrade's handover

    // The ring crosses an in-place upgrade as bytes after the state's JSON (`UpgradeState.write`):
    // `recorded`, then a line per entry, oldest first,
    // `seq TAB time TAB kind TAB at TAB pool TAB replica TAB pid TAB detail`, an absent field empty and a
    // present text prefixed with `+` (so that "" and nil differ), with `\`, tab and newline escaped.
    // Measured at 1000 workers with a full ring (10,000 entries): as Codable values they were 1 MB of
    // a 1.3 MB handover and 50–110 ms of writing and reading it; as one JSON string 30 ms; as these
    // bytes a few ms. A line that does not read (a kind this image does not know) is left out: the
    // ring is history, not state.

    /// The ring as the handover carries it.
    func handoverBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ring.count * 100 + 24)
        out += String(recorded).utf8
        out.append(UInt8(ascii: "\n"))
        for entry in entries(since: nil, pool: nil) { entry.write(to: &out) }
        return out
    }

    /// The ring an earlier image handed over (nil if its first line is not a count).
    init?(handoverBytes bytes: ArraySlice<UInt8>) {
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)[...]
        guard let first = lines.popFirst(), let count = UInt64(String(decoding: first, as: UTF8.self)) else { return nil }
        recorded = count
        ring = Array(lines.compactMap(Entry.init(line:)).suffix(Self.capacity))
        next = 0
    }
}

extension EventLog.Entry {
    fileprivate func write(to out: inout [UInt8]) {
        func number(_ text: String) { out += text.utf8 }
        func text(_ s: String?) {
            guard let s else { return }
            out.append(UInt8(ascii: "+"))
            for b in s.utf8 {
                switch b {
                case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
                case UInt8(ascii: "\t"): out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
                case UInt8(ascii: "\n"): out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
                default: out.append(b)
                }
            }
        }
        let tab = UInt8(ascii: "\t")
        number(String(seq))
        out.append(tab)
        number(String(time))
        out.append(tab)
        out += event.kind.rawValue.utf8
        out.append(tab)
        number(String(event.at.nanoseconds))
        out.append(tab)
        text(event.pool)
        out.append(tab)
        if let replica = event.replica { number(String(replica)) }
        out.append(tab)
        if let pid = event.pid { number(String(pid)) }
        out.append(tab)
        text(event.detail)
        out.append(UInt8(ascii: "\n"))
    }

    fileprivate init?(line: ArraySlice<UInt8>) {
        let fields = line.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false)
        func string(_ i: Int) -> String { String(decoding: fields[i], as: UTF8.self) }
        /// .some(nil): absent; nil: not a number.
        func optional<T: LosslessStringConvertible>(_ i: Int, _: T.Type) -> T?? {
            fields[i].isEmpty ? .some(nil) : T(string(i)).map { .some($0) }
        }
        guard fields.count == 8, let seq = UInt64(string(0)), let time = Double(string(1)),
            let kind = LifecycleEvent.Kind(rawValue: string(2)), let at = UInt64(string(3)),
            let pool = Self.text(fields[4]), let replica = optional(5, Int.self), let pid = optional(6, Int32.self),
            let detail = Self.text(fields[7])
        else { return nil }
        self.init(seq: seq, time: time, event: LifecycleEvent(kind, at: Instant(nanoseconds: at), pool: pool, replica: replica, pid: pid, detail: detail))
    }

    /// .some(nil): absent; nil: not a text field.
    private static func text(_ bytes: ArraySlice<UInt8>) -> String?? {
        guard let first = bytes.first else { return .some(nil) }
        guard first == UInt8(ascii: "+") else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var escaped = false
        for b in bytes.dropFirst() {
            if escaped {
                switch b {
                case UInt8(ascii: "t"): out.append(UInt8(ascii: "\t"))
                case UInt8(ascii: "n"): out.append(UInt8(ascii: "\n"))
                default: out.append(b)
                }
                escaped = false
            } else if b == UInt8(ascii: "\\") {
                escaped = true
            } else {
                out.append(b)
            }
        }
        return .some(String(decoding: out, as: UTF8.self))
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
