import PoolvisorCore

extension PoolsFileDecoder {
    /// `[supervisor.redis_events]`; the URL is looked up once the shared environment is known.
    static func decodeRedisEvents(_ e: inout TableReader) -> (variable: String, key: [String], spec: RedisEventsSpec)? {
        let variable = e.environmentName("redis_url_env")
        if variable == nil, !e.table.keys.contains("redis_url_env") {
            e.sink.error(e.path, "\(e.sectionName) needs 'redis_url_env' (the name of the variable holding the Redis URL)")
        }
        var spec = RedisEventsSpec(endpoint: Secret(""), variable: variable ?? "")
        spec.stream = e.nonEmptyString("stream") ?? spec.stream
        spec.maxlen = e.integer("maxlen", in: 1...10_000_000) ?? spec.maxlen
        spec.heartbeat = e.seconds("heartbeat_seconds", in: 0.1...3600) ?? spec.heartbeat
        spec.keyPrefix = e.nonEmptyString("key_prefix") ?? spec.keyPrefix
        guard let variable else { return nil }
        return (variable, e.keyPath("redis_url_env"), spec)
    }

    /// `busy_from = "redis-key"` and `busy_key`: the key a worker sets while it runs a job (Aegis Stack's
    /// `worker:{hostname}:{pid}:busy` by default); `{pool}`, `{instance}` and `{hostname}` are written in
    /// now, `{pid}` for each worker.
    static func decodeBusyFrom(_ r: inout TableReader, pool: String, instance: String, hostname: String, redisEvents: Bool) -> String? {
        let source = r.choice("busy_from", ["notify", "redis-key"])
        let written = r.nonEmptyString("busy_key")
        guard source == "redis-key" else {
            if written != nil { r.sink.error(r.keyPath("busy_key"), "'\(r.name("busy_key"))' needs busy_from = \"redis-key\"") }
            return nil
        }
        if !redisEvents {
            r.sink.error(r.keyPath("busy_from"), "'\(r.name("busy_from"))' = \"redis-key\" needs [supervisor.redis_events] (the Redis the keys are read from)")
        }
        let key = written ?? "worker:{hostname}:{pid}:busy"
        guard key.contains("{pid}") else {
            r.sink.error(r.keyPath("busy_key"), "'\(r.name("busy_key"))' must contain {pid}: each worker has its own key")
            return nil
        }
        return key.replacing("{pool}", with: pool).replacing("{instance}", with: instance).replacing("{hostname}", with: hostname)
    }
}
