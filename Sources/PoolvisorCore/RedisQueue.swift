/// Where a queue library keeps a queue in Redis, and how deep it is: more than KEDA's one LLEN, because
/// arq keeps a sorted set, TaskIQ a stream with a consumer group, BullMQ a list plus a sorted set. Pure:
/// the edge runs `commands` and hands the replies to `depth`.
public struct RedisQueue: Sendable, Equatable, CustomStringConvertible {
    public enum Library: String, Sendable, CaseIterable {
        case arq, dramatiq, taskiq, bullmq, celery, rq
        /// A plain list (KEDA's redis trigger): `LLEN`.
        case list
    }

    /// Which jobs count towards the depth.
    public enum Count: String, Sendable, CaseIterable {
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

    /// One key the depth is read from.
    public struct Key: Sendable, Equatable, CustomStringConvertible {
        public var key: String
        /// "list", "sorted set", "stream"
        public var type: String
        /// What it holds: "ready jobs", "delayed jobs", …
        public var holds: String
        public var description: String { "\(key) (\(type), \(holds))" }
    }

    /// Whether the library's layout can count `count` at all; nil when it can, else why not.
    public static func unsupported(_ library: Library, _ count: Count) -> String? {
        switch (library, count) {
        case (_, .ready): nil
        case (.list, _): "a plain list has no delayed or in-flight jobs to count"
        case (.celery, .readyAndDelayed): "Celery keeps tasks with an eta or countdown in the workers, not in the queue"
        case (.celery, .readyAndInFlight): "Celery's in-flight tasks are not kept per queue in Redis"
        case (.dramatiq, .readyAndInFlight): "Dramatiq keeps in-flight messages per worker, not per queue"
        case (.taskiq, .readyAndDelayed): "TaskIQ's scheduled tasks are not in the queue's stream"
        default: nil
        }
    }

    private var prefix: String {
        keyPrefix ?? (library == .dramatiq ? "dramatiq" : library == .bullmq ? "bull" : "")
    }
    private var group: String { consumerGroup ?? "taskiq" }

    /// The keys this queue's depth is read from, for `poolvisor check` and for messages.
    public var keys: [Key] {
        switch library {
        case .list, .celery:
            return [Key(key: name, type: "list", holds: "ready jobs")]
        case .rq:
            var keys = [Key(key: "rq:queue:\(name)", type: "list", holds: "ready jobs")]
            if count == .readyAndDelayed { keys.append(Key(key: "rq:scheduled:\(name)", type: "sorted set", holds: "scheduled jobs")) }
            if count == .readyAndInFlight { keys.append(Key(key: "rq:wip:\(name)", type: "sorted set", holds: "started jobs")) }
            return keys
        case .dramatiq:
            var keys = [Key(key: "\(prefix):\(name)", type: "list", holds: "ready messages")]
            if count == .readyAndDelayed { keys.append(Key(key: "\(prefix):\(name).DQ", type: "list", holds: "delayed messages")) }
            return keys
        case .arq:
            return [Key(key: name, type: "sorted set", holds: count == .ready ? "jobs due now (score ≤ now)" : "jobs, deferred ones included")]
        case .taskiq:
            return [Key(key: name, type: "stream", holds: count == .ready ? "consumer group '\(group)': lag" : "consumer group '\(group)': lag + pending")]
        case .bullmq:
            let base = "\(prefix):\(name)"
            var keys = [Key(key: "\(base):wait", type: "list", holds: "waiting jobs"),
                        Key(key: "\(base):prioritized", type: "sorted set", holds: "waiting jobs with a priority")]
            if count == .readyAndDelayed { keys.append(Key(key: "\(base):delayed", type: "sorted set", holds: "delayed jobs")) }
            if count == .readyAndInFlight { keys.append(Key(key: "\(base):active", type: "list", holds: "active jobs")) }
            return keys
        }
    }

    /// The commands to run (pipelined), given the time now in milliseconds since the epoch (arq's
    /// scores are run-at times).
    public func commands(nowMilliseconds: Int64) -> [[String]] {
        switch library {
        case .arq:
            return count == .readyAndDelayed ? [["ZCARD", name]] : [["ZCOUNT", name, "-inf", String(nowMilliseconds)]]
        case .taskiq:
            return [["XINFO", "GROUPS", name], ["XLEN", name]]
        default:
            return keys.map { [$0.type == "list" ? "LLEN" : "ZCARD", $0.key] }
        }
    }

    /// The depth from the replies to `commands`, or a clear error (a key of the wrong type is not zero).
    public func depth(_ replies: [RedisValue]) -> Result<Double, ScalerError> {
        let keys = self.keys
        if library == .taskiq { return streamDepth(replies) }
        var total: Int64 = 0
        for (i, reply) in replies.enumerated() {
            let key = i < keys.count ? keys[i] : Key(key: name, type: "sorted set", holds: "jobs")
            switch reply {
            case .integer(let n): total += n
            case .error(let message) where message.hasPrefix("WRONGTYPE"):
                return .failure(ScalerError("key '\(key.key)' is not a \(key.type) (\(library.rawValue) keeps \(key.holds) there): is queue_library = \"\(library.rawValue)\" and queue_name right?"))
            case .error(let message):
                return .failure(ScalerError("Redis refused to read '\(key.key)': \(message)"))
            default:
                return .failure(ScalerError("unexpected reply from Redis for '\(key.key)'"))
            }
        }
        return .success(Double(total))
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
                    return .failure(ScalerError("Redis cannot tell consumer group '\(group)' of '\(name)' its lag (entries were deleted from the stream, or Redis is older than 7.0)"))
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
