/// Deadlines the reconciler has asked to be woken for, in a binary min-heap.
///
/// Entries are never cancelled: when one fires, the reconciler checks it against the current state and
/// ignores it if it no longer applies (the worker it was for is gone, the backoff was cut short…).
struct TimerQueue<Key: Sendable & Codable>: Sendable, Codable {
    /// One deadline; `seq` keeps deadlines of the same instant in the order they were asked for.
    private struct Entry: Sendable, Codable {
        var at: Instant
        var seq: UInt64
        var key: Key
    }

    private var heap: [Entry] = []
    private var seq: UInt64 = 0

    var next: Instant? { heap.first?.at }
    var first: Key? { heap.first?.key }
    var count: Int { heap.count }

    mutating func schedule(_ key: Key, at instant: Instant) {
        seq &+= 1
        heap.append(Entry(at: instant, seq: seq, key: key))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard earlier(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    /// Removes and returns the earliest entry due at or before `now`.
    mutating func popDue(_ now: Instant) -> Key? {
        guard let first = heap.first, first.at <= now else { return nil }
        return popFirst()
    }

    /// Removes and returns the earliest entry.
    @discardableResult
    mutating func popFirst() -> Key? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && earlier(heap[l], heap[m]) { m = l }
                if r < heap.count && earlier(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return first.key
    }

    private func earlier(_ a: Entry, _ b: Entry) -> Bool {
        a.at != b.at ? a.at < b.at : a.seq < b.seq
    }
}
