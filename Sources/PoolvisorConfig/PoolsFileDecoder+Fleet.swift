import PoolvisorCore

extension PoolsFileDecoder {
    /// What `[supervisor.fleet]` says before the shared environment is known: the variable holding
    /// the store's connection string (looked up afterwards), the key that named it, and the rest.
    struct FleetDraft {
        var postgres: Bool
        var variable: String
        var key: [String]
        var spec: FleetSpec
        /// False when another key of the table was wrong: the variable is still checked, no fleet results.
        var valid: Bool
    }

    /// `[supervisor.fleet]`: the fleet's name, this host's member id, the heartbeat and the TTL, and
    /// the coordination store (`redis_url_env` or `postgres_connection_env`).
    static func decodeFleet(_ f: inout TableReader, instance: String, hostname: String) -> FleetDraft? {
        let redis = f.environmentName("redis_url_env")
        let postgres = f.environmentName("postgres_connection_env")
        let postgresWritten = f.table.keys.contains("postgres_connection_env")
        let redisWritten = f.table.keys.contains("redis_url_env")
        if redisWritten && postgresWritten {
            f.sink.error(f.keyPath("postgres_connection_env"), "\(f.sectionName) takes one store: 'redis_url_env' or 'postgres_connection_env', not both")
        } else if !redisWritten && !postgresWritten {
            f.sink.error(
                f.path,
                "\(f.sectionName) needs 'redis_url_env' or 'postgres_connection_env' (the name of the variable holding the Redis URL or the PostgreSQL connection string the hosts meet in)"
            )
        }

        var name: String?
        if let written = f.string("name") {
            if Naming.isValid(written) {
                name = written
            } else {
                f.sink.error(f.keyPath("name"), "'\(f.name("name"))' must be \(Naming.rule), not '\(written)'")
            }
        } else if !f.table.keys.contains("name") {
            f.sink.error(f.path, "\(f.sectionName) needs 'name' (the fleet's name: the hosts running the same pools against one queue share it)")
        }

        var member = "\(hostname)-\(instance)"
        if let written = f.nonEmptyString("member") {
            let expanded = written.replacing("{hostname}", with: hostname).replacing("{instance}", with: instance)
            if expanded.utf8.count > 200 || expanded.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
                f.sink.error(f.keyPath("member"), "'\(f.name("member"))' must be at most 200 bytes with no spaces or control characters")
            } else {
                member = expanded
            }
        }

        let heartbeat = f.seconds("heartbeat_seconds", in: 0.1...3600)
        let ttl = f.seconds("ttl_seconds", in: 0.2...86_400)
        let effectiveHeartbeat = heartbeat ?? .seconds(5)
        let effectiveTTL = ttl ?? .seconds(15)
        if effectiveTTL <= effectiveHeartbeat, heartbeat != nil || ttl != nil {
            f.sink.error(
                f.keyPath(ttl != nil ? "ttl_seconds" : "heartbeat_seconds"),
                "'\(f.name("ttl_seconds"))' (\(effectiveTTL.humanReadable)) must be longer than '\(f.name("heartbeat_seconds"))' (\(effectiveHeartbeat.humanReadable)): a live host would drop out between heartbeats"
            )
        }
        guard redisWritten != postgresWritten, let variable = redis ?? postgres else { return nil }
        var spec = FleetSpec(name: name ?? "", store: postgres != nil ? .postgres(Secret("")) : .redis(Secret("")), variable: variable, member: member)
        spec.heartbeat = effectiveHeartbeat
        spec.ttl = effectiveTTL
        let key = f.keyPath(postgres != nil ? "postgres_connection_env" : "redis_url_env")
        return FleetDraft(postgres: postgres != nil, variable: variable, key: key, spec: spec, valid: name != nil)
    }

    /// The store's connection string from the shared environment, or the error that says why not.
    static func resolveFleet(_ draft: FleetDraft, shared: Environment, sink: DiagnosticSink, withheld: Bool = false) -> FleetSpec? {
        if withheld, shared[draft.variable] == nil { return draft.valid ? draft.spec : nil }
        guard let url = shared[draft.variable], !url.isEmpty else {
            sink.error(
                draft.key,
                "'\(draft.key.joined(separator: "."))' names $\(draft.variable), which the shared environment does not set (set it in [supervisor] env_file or [env])")
            return nil
        }
        if !draft.postgres, case .failure(let why) = RedisEndpoint.parse(url) {
            sink.error(draft.key, "the Redis URL in $\(draft.variable) is not valid: \(why.message)")
            return nil
        }
        guard draft.valid else { return nil }
        var spec = draft.spec
        spec.store = draft.postgres ? .postgres(Secret(url)) : .redis(Secret(url))
        return spec
    }
}
