/// Where a queue library keeps a queue in Redis, and how deep it is: more than KEDA's one LLEN, because
/// arq keeps a sorted set, TaskIQ a stream with a consumer group, BullMQ a list plus a sorted set. Pure:
/// the edge runs `commands` and hands the replies to `depth`.
public struct RedisQueue: Sendable, Equatable, CustomStringConvertible, Codable {
    public enum Library: String, Sendable, CaseIterable, Codable {
        case arq, dramatiq, taskiq, bullmq, celery, rq
        /// A plain list (KEDA's redis trigger): `LLEN`.
        case list
    }

    /// Which jobs count towards the depth.
    public enum Count: String, Sendable, CaseIterable, Codable {
        /// Jobs waiting to run now.
        case ready
        /// Plus jobs scheduled for later (deferred, delayed).
        case readyAndDelayed = "ready+delayed"
        /// Plus jobs a worker has taken and not finished.
        case readyAndInFlight = "ready+in_flight"
    }

    public var library: Library
    /// Exactly what the application passes to the library (for arq the whole key, `arq:queue:chat`).
    public var name: String
    /// Dramatiq's namespace, BullMQ's prefix; nil for the library's default.
    public var keyPrefix: String?
    /// TaskIQ's consumer group; nil for the library's default.
    public var consumerGroup: String?
    public var count: Count

    public init(library: Library, name: String, keyPrefix: String? = nil, consumerGroup: String? = nil, count: Count = .ready) {
        self.library = library
        self.name = name
        self.keyPrefix = keyPrefix
        self.consumerGroup = consumerGroup
        self.count = count
    }

    public var description: String { library == .list ? name : "\(library.rawValue) \(name)" }

    /// Whether the library's layout can count `count` at all; nil when it can, else why not.
    public static func unsupported(_ library: Library, _ count: Count) -> String? {
        switch (library, count) {
        case (_, .ready): nil
        case (.list, _): "a plain list has no delayed or in-flight jobs to count"
        case (.celery, .readyAndDelayed):
            "over Redis, Celery has no delayed queue: a countdown or eta task waits in the queue's list (counted as ready) until a worker takes it and holds it until it is due"
        case (.celery, .readyAndInFlight): "Celery keeps unacknowledged tasks in one hash for every queue of the database, not per queue"
        case (.taskiq, .readyAndDelayed): "TaskIQ's scheduled tasks wait in its scheduler's keys, not in the queue's stream"
        default: nil
        }
    }

    private var prefix: String {
        keyPrefix ?? (library == .dramatiq ? "dramatiq" : library == .bullmq ? "bull" : "")
    }
    private var group: String { consumerGroup ?? "taskiq" }

    /// One key the depth is read from.
    public struct Key: Sendable, Equatable, CustomStringConvertible, Codable {
        public var key: String
        /// "list", "sorted set", "stream", "hash"
        public var type: String
        /// What it holds: "ready jobs", "delayed jobs", …
        public var holds: String
        /// What its reply means for the depth.
        var role: Role = .counted
        public var description: String {
            "\(key.split(separator: "\u{06}\u{16}", omittingEmptySubsequences: false).joined(separator: "\\x06\\x16")) (\(type), \(holds))"
        }

        enum Role: Sendable, Equatable, Codable {
            /// Its number is added to the depth.
            case counted
            /// Waiting jobs that the library does not hand out while the queue is paused.
            case waiting
            /// 1 when the queue is paused (BullMQ's `paused` field in its meta hash): waiting jobs count 0.
            case pausedFlag
        }
    }

    /// The keys this queue's depth is read from, for `poolvisor check` and for messages.
    public var keys: [Key] { reads(nowMilliseconds: 0).map(\.key) }

    /// The commands to run (pipelined), given the time now in milliseconds since the epoch (arq's
    /// scores and BullMQ's delayed scores are run-at times).
    public func commands(nowMilliseconds: Int64) -> [[String]] {
        reads(nowMilliseconds: nowMilliseconds).map(\.command)
    }

    private struct Read {
        var key: Key
        var command: [String]
    }

    private func reads(nowMilliseconds now: Int64) -> [Read] {
        func list(_ key: String, _ holds: String, _ role: Key.Role = .counted) -> Read {
            Read(key: Key(key: key, type: "list", holds: holds, role: role), command: ["LLEN", key])
        }
        func sortedSet(_ key: String, _ holds: String, _ role: Key.Role = .counted) -> Read {
            Read(key: Key(key: key, type: "sorted set", holds: holds, role: role), command: ["ZCARD", key])
        }
        switch library {
        case .list:
            return [list(name, "ready jobs")]
        case .celery:
            // Tasks sent with a priority wait in lists of their own: kombu's steps 3, 6 and 9, named
            // queue + "\x06\x16" + step.
            return [list(name, "ready jobs")]
                + ["3", "6", "9"].map {
                    list(name + "\u{06}\u{16}" + $0, "ready jobs with priority " + ($0 == "9" ? "9" : "\($0)–\(Int($0)! + 2)"))
                }
        case .rq:
            var reads = [list("rq:queue:\(name)", "ready jobs")]
            // Scores are run-at times in seconds. A scheduled job that is due is ready: only a worker
            // started --with-scheduler moves it to the queue, so at zero replicas nobody would.
            let scheduled = "rq:scheduled:\(name)"
            if count == .readyAndDelayed {
                reads.append(sortedSet(scheduled, "scheduled jobs"))
            } else {
                reads.append(
                    Read(
                        key: Key(key: scheduled, type: "sorted set", holds: "scheduled jobs that are due"),
                        command: ["ZCOUNT", scheduled, "-inf", String(now / 1000)]))
            }
            if count == .readyAndInFlight { reads.append(sortedSet("rq:wip:\(name)", "started jobs")) }
            return reads
        case .dramatiq:
            // A worker pulls delayed messages off the `.DQ` list into memory at once, so the list reads
            // 0 while any worker runs; their hash keeps them until they are due. Likewise `.msgs` keeps
            // every message until it is acked: ready and in flight.
            func hash(_ key: String, _ holds: String) -> Read {
                Read(key: Key(key: key, type: "hash", holds: holds), command: ["HLEN", key])
            }
            let base = "\(prefix):\(name)"
            switch count {
            case .ready: return [list(base, "ready messages")]
            case .readyAndDelayed: return [list(base, "ready messages"), hash(base + ".DQ.msgs", "delayed messages")]
            case .readyAndInFlight: return [hash(base + ".msgs", "ready and in-flight messages")]
            }
        case .arq:
            // arq removes a job from its sorted set when the job finishes, so running jobs are in it too.
            let key = Key(key: name, type: "sorted set", holds: "")
            switch count {
            case .readyAndDelayed:
                return [Read(key: with(key, holds: "every job: due, deferred and running"), command: ["ZCARD", name])]
            case .ready, .readyAndInFlight:
                return [
                    Read(
                        key: with(key, holds: "jobs due now (score ≤ now), running ones included"),
                        command: ["ZCOUNT", name, "-inf", String(now)])
                ]
            }
        case .taskiq:
            return [
                Read(
                    key: Key(
                        key: name, type: "stream",
                        holds: count == .readyAndInFlight
                            ? "consumer group '\(group)': lag + pending" : "consumer group '\(group)': lag"),
                    command: ["XINFO", "GROUPS", name]),
                Read(
                    key: Key(key: name, type: "stream", holds: "entries, before any worker made the group"),
                    command: ["XLEN", name]),
            ]
        case .bullmq:
            let base = "\(prefix):\(name)"
            var reads = [
                list("\(base):wait", "waiting jobs", .waiting),
                sortedSet("\(base):prioritized", "waiting jobs with a priority", .waiting),
            ]
            // Scores are run-at milliseconds × 4096 + a counter. A delayed job that is due is ready: a
            // worker moves it to `wait` only when it next takes a job, so at zero replicas nobody would.
            let delayed = Key(key: "\(base):delayed", type: "sorted set", holds: "", role: .waiting)
            if count == .readyAndDelayed {
                reads.append(Read(key: with(delayed, holds: "delayed jobs"), command: ["ZCARD", delayed.key]))
            } else {
                let due = (now + 1) * 4096 - 1
                reads.append(
                    Read(
                        key: with(delayed, holds: "delayed jobs that are due"),
                        command: ["ZCOUNT", delayed.key, "0", String(due)]))
            }
            if count == .readyAndInFlight { reads.append(list("\(base):active", "active jobs")) }
            reads.append(
                Read(
                    key: Key(key: "\(base):meta", type: "hash", holds: "the queue's paused flag", role: .pausedFlag),
                    command: ["HEXISTS", "\(base):meta", "paused"]))
            return reads
        }
    }

    private func with(_ key: Key, holds: String) -> Key {
        var key = key
        key.holds = holds
        return key
    }

    /// The depth from the replies to `commands`, or a clear error (a key of the wrong type is not zero).
    public func depth(_ replies: [RedisValue]) -> Result<Double, ScalerError> {
        if library == .taskiq { return streamDepth(replies) }
        let keys = self.keys
        guard replies.count == keys.count else { return .failure(ScalerError("unexpected reply from Redis for '\(name)'")) }
        var counted: Int64 = 0
        var waiting: Int64 = 0
        var paused = false
        for (key, reply) in zip(keys, replies) {
            switch reply {
            case .integer(let n):
                switch key.role {
                case .counted: counted += n
                case .waiting: waiting += n
                case .pausedFlag: paused = n != 0
                }
            case .error(let message) where message.hasPrefix("WRONGTYPE"):
                return .failure(
                    ScalerError(
                        "key '\(key.key)' is not a \(key.type) (\(library.rawValue) keeps \(key.holds) there): is queue_library = \"\(library.rawValue)\" and queue_name right?"))
            case .error(let message):
                return .failure(ScalerError("Redis refused to read '\(key.key)': \(message)"))
            default:
                return .failure(ScalerError("unexpected reply from Redis for '\(key.key)'"))
            }
        }
        // A paused BullMQ queue hands out no job: its waiting jobs need no worker.
        return .success(Double(counted + (paused ? 0 : waiting)))
    }

    /// TaskIQ: the consumer group's lag (+ pending), from XINFO GROUPS; before any worker created the
    /// group, every entry of the stream is waiting (XLEN).
    private func streamDepth(_ replies: [RedisValue]) -> Result<Double, ScalerError> {
        guard replies.count == 2 else { return .failure(ScalerError("unexpected reply from Redis for '\(name)'")) }
        switch replies[0] {
        case .error(let message) where message.contains("no such key"):
            return .success(0)
        case .error(let message) where message.hasPrefix("WRONGTYPE"):
            return .failure(ScalerError("key '\(name)' is not a stream (TaskIQ's RedisStreamBroker keeps its queue there): is queue_library = \"taskiq\" and queue_name right?"))
        case .error(let message):
            return .failure(ScalerError("Redis refused XINFO GROUPS on '\(name)': \(message)"))
        case .array(let groups):
            for case .array(let fields) in groups {
                var info: [String: RedisValue] = [:]
                var i = 0
                while i + 1 < fields.count {
                    if case .string(let k) = fields[i] { info[k] = fields[i + 1] }
                    i += 2
                }
                guard case .string(group)? = info["name"] else { continue }
                guard case .integer(let lag)? = info["lag"] else {
                    return .failure(
                        ScalerError("Redis cannot tell consumer group '\(group)' of '\(name)' its lag (entries were deleted from the stream, or Redis is older than 7.0)"))
                }
                var depth = lag
                if count == .readyAndInFlight, case .integer(let pending)? = info["pending"] { depth += pending }
                return .success(Double(depth))
            }
            if case .integer(let length) = replies[1] { return .success(Double(length)) }
            return .failure(ScalerError("unexpected reply from Redis for XLEN '\(name)'"))
        default:
            return .failure(ScalerError("unexpected reply from Redis for XINFO GROUPS '\(name)'"))
        }
    }
}
