import PoolvisorCore

extension PoolsFileDecoder {
    /// A queue of `[supervisor] queues` (or, without it, of Noxus's when the file uses worker_subscribe)
    /// that no pool able to run a worker serves: its jobs would wait forever.
    static func warnAboutUnservedQueues(_ pools: [PoolSpec], queues: [String]?, subscribes: Bool, sink: DiagnosticSink) {
        // An autoscaled pool serves even at min_replicas = 0: the autoscaler starts workers for the queue.
        func serves(_ pool: PoolSpec) -> Bool { pool.enabled && (pool.autoscaling.map { $0.rules.maxReplicas > 0 } ?? (pool.replicas > 0)) }
        var served: Set<String> = []
        var idlePools: [String: [String]] = [:]  // queue → the pools that list it but run no worker
        for pool in pools {
            for queue in pool.servedQueues ?? [] {
                if serves(pool) { served.insert(queue) } else { idlePools[queue, default: []].append(pool.name) }
            }
        }
        if let queues {
            for queue in queues where !served.contains(queue) {
                let idle = idlePools[queue] ?? []
                let more = idle.count > 5 ? " and \(idle.count - 5) more" : ""
                let hint =
                    idle.isEmpty
                    ? "a pool's 'serves' lists the queues its workers take"
                    : "only disabled pools or pools with replicas = 0 serve it: \(idle.prefix(5).joined(separator: ", "))\(more)"
                sink.warning(["supervisor", "queues"], "no enabled pool with replicas serves queue '\(queue)': its jobs would never run (\(hint))")
            }
        } else if subscribes {
            for queue in QueueSubscription.queueTypes where !served.contains(queue.rawValue) {
                sink.warning(["pools"], "no enabled pool with replicas subscribes to '\(queue.rawValue)' tasks: \(queue.rawValue) tasks would never run")
            }
        }
    }
}

/// Names of an application's queues, in `[supervisor] queues` and a pool's `serves`: as the queue
/// library names them, so wider than `Naming` ("default", "emails", "arq:queue", "high.priority").
enum QueueName {
    static let rule = "1 to 63 letters, digits, '-', '_', '.' or ':', starting with a letter or digit"
    /// The most queues one list may name.
    static let maximumCount = 64

    static func isValid(_ name: String) -> Bool {
        guard (1...63).contains(name.unicodeScalars.count), let first = name.unicodeScalars.first else { return false }
        func ok(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) }
        return ok(first) && name.unicodeScalars.allSatisfy { ok($0) || $0 == "-" || $0 == "_" || $0 == "." || $0 == ":" }
    }
}

extension TableReader {
    /// An array of queue names: at most `QueueName.maximumCount`, each valid (an invalid one is an
    /// error, a repeated one a warning). The valid names, each once, in order.
    mutating func queueNames(_ key: String) -> [String]? {
        guard let items = strings(key) else { return nil }
        guard items.count <= QueueName.maximumCount else {
            sink.error(keyPath(key), "'\(name(key))' lists \(items.count) queues; at most \(QueueName.maximumCount)")
            return nil
        }
        var out: [String] = []
        for item in items {
            if !QueueName.isValid(item) {
                sink.error(keyPath(key), "'\(name(key))': queue name \(ConfigValue.string(item).shortDescription) must be \(QueueName.rule)")
            } else if out.contains(item) {
                sink.warning(keyPath(key), "'\(name(key))' lists queue '\(item)' twice")
            } else {
                out.append(item)
            }
        }
        return out
    }
}
