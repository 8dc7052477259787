import PoolvisorCore

extension PoolsFileDecoder {
    static let maximumProbeThreshold = 1000
    static let maximumHeaders = 32

    /// `[pools.X.startup_probe]`, `readiness_probe`, `liveness_probe`: Kubernetes' fields and defaults.
    /// - Parameters:
    ///   - mostReplicas: the most replicas the pool may have from the file, for `{replica + N}` ports.
    ///   - environment: the worker's, for an exec probe's program lookup in its PATH.
    static func decodeProbes(
        _ r: inout TableReader, pool: String, instance: String, mostReplicas: Int, environment: Environment, workingDirectory: String?,
        host: some HostProbe
    ) -> Probes {
        var probes = Probes()
        for kind in ProbeKind.allCases {
            guard var t = r.table(kind.key) else { continue }
            probes[kind] = decodeProbe(
                &t, kind, pool: pool, instance: instance, mostReplicas: mostReplicas, environment: environment,
                workingDirectory: workingDirectory, host: host)
            t.finish()
        }
        return probes
    }

    private static func decodeProbe(
        _ t: inout TableReader, _ kind: ProbeKind, pool: String, instance: String, mostReplicas: Int, environment: Environment,
        workingDirectory: String?, host: some HostProbe
    ) -> ProbeSpec? {
        let sink = t.sink
        let before = sink.diagnostics.errors.count
        var handlers: [ProbeHandler] = []
        var written: [String] = []
        for key in ["exec", "http_get", "tcp_socket"] { _ = t.value(key) }  // known, for the suggestions of a misspelt one

        /// A value with `{pool}`, `{instance}`, `{hostname}` written in and `{replica}` left per worker.
        func template(_ text: String, key: [String]) -> ProbeValue? {
            switch ReplicaTemplate.read(text) {
            case .failure(let failure):
                sink.error(key, "'\(key.joined(separator: "."))': \(failure.message)")
                return nil
            case .foreign:
                return .fixed(text)
            case .template(let template):
                let resolved = template.resolving(pool: pool, instance: instance, hostname: host.hostname)
                return resolved.variesByReplica ? .perReplica(resolved) : .fixed(resolved.expand(pool: pool, instance: instance, hostname: host.hostname, replica: 0))
            }
        }

        /// `port`: 1-65535, or a template whose every replica's value is one.
        func port(_ e: inout TableReader) -> ProbeValue? {
            let key = e.keyPath("port")
            switch e.value("port") {
            case nil:
                sink.error(e.path, "\(e.sectionName) needs a port")
                return nil
            case .integer(let n)?:
                guard (1...65535).contains(n) else {
                    sink.error(key, "'\(e.name("port"))' must be between 1 and 65535, not \(n)")
                    return nil
                }
                return .fixed(String(n))
            case .string(let s)?:
                guard let value = template(s, key: key) else { return nil }
                for replica in Set([0, max(mostReplicas - 1, 0)]) {
                    let text = value.value(for: replica, pool: pool)
                    guard let n = Int(text), (1...65535).contains(n) else {
                        sink.error(key, "'\(e.name("port"))' is \(text) for replica \(replica), which is not a port (1-65535)")
                        return nil
                    }
                }
                return value
            case let other?:
                sink.error(key, "'\(e.name("port"))' must be a port number or a template such as \"{replica + 8000}\", not \(other.typeDescription)")
                return nil
            }
        }

        /// `host`: an IP address (a name would need the resolver, which can hang); 127.0.0.1 by default.
        func address(_ e: inout TableReader) -> String {
            guard let h = e.string("host") else { return "127.0.0.1" }
            if h == "localhost" { return "127.0.0.1" }
            guard IPAddress.isLiteral(h) else {
                sink.error(e.keyPath("host"), "'\(e.name("host"))' must be an IP address such as 127.0.0.1 or ::1, not '\(h)' (probes do not look names up)")
                return "127.0.0.1"
            }
            return h
        }

        if t.table.keys.contains("exec") {
            written.append("exec")
            if let argv = t.strings("exec") {
                if argv.isEmpty || argv[0].isEmpty {
                    sink.error(t.keyPath("exec"), "'\(t.name("exec"))' must name a program: [\"program\", \"arg\", ...]")
                } else {
                    let values = argv.compactMap { template($0, key: t.keyPath("exec")) }
                    if case .perReplica = values.first {
                        sink.error(t.keyPath("exec"), "'\(t.name("exec"))': the program itself cannot differ per replica ({replica} in its first element)")
                    }
                    let program = values.first?.description ?? argv[0]
                    if let executable = resolveExecutable(program, path: environment["PATH"] ?? "", workingDirectory: workingDirectory, host: host) {
                        if values.count == argv.count { handlers.append(.exec(executable: executable, arguments: values)) }
                    } else {
                        let where_ = program.contains("/") ? "" : " in the worker's PATH"
                        sink.error(t.keyPath("exec"), "'\(t.name("exec"))': program '\(program)' was not found\(where_) or is not executable")
                    }
                }
            }
        }
        if t.table.keys.contains("http_get"), var h = t.table("http_get") {
            written.append("http_get")
            let host = address(&h)
            let port = port(&h)
            var path = ProbeValue.fixed("/")
            if let p = h.string("path") {
                if !p.hasPrefix("/") || p.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } == true }) {
                    sink.error(h.keyPath("path"), "'\(h.name("path"))' must start with / and hold no spaces or control characters, not '\(p)'")
                } else if let value = template(p, key: h.keyPath("path")) {
                    path = value
                }
            }
            if let scheme = h.choice("scheme", ["HTTP", "HTTPS"]), scheme == "HTTPS" {
                sink.error(
                    h.keyPath("scheme"),
                    "'\(h.name("scheme"))': HTTPS probes are not supported (poolvisor has no TLS library); probe the plain HTTP port, or use an exec probe such as [\"curl\", \"-fsk\", \"https://127.0.0.1:8443/healthz\"]"
                )
            }
            let headers = decodeHeaders(&h)
            h.finish()
            if let port { handlers.append(.httpGet(host: host, port: port, path: path, headers: headers)) }
        }
        if t.table.keys.contains("tcp_socket"), var s = t.table("tcp_socket") {
            written.append("tcp_socket")
            let host = address(&s)
            let port = port(&s)
            s.finish()
            if let port { handlers.append(.tcpSocket(host: host, port: port)) }
        }
        if written.count > 1 {
            sink.error(t.path, "\(t.sectionName) takes exactly one of exec, http_get and tcp_socket, not \(written.joined(separator: " and "))")
        } else if written.isEmpty {
            sink.error(t.path, "\(t.sectionName) needs one of exec = [\"program\", ...], http_get = { port = ... } or tcp_socket = { port = ... }")
        }

        let initialDelay = t.seconds("initial_delay_seconds", in: 0...maximumSeconds)
        let period = t.seconds("period_seconds", in: 0.1...maximumSeconds)
        let timeout = t.seconds("timeout_seconds", in: 0.01...maximumSeconds)
        let successThreshold = t.integer("success_threshold", in: 1...maximumProbeThreshold)
        let failureThreshold = t.integer("failure_threshold", in: 1...maximumProbeThreshold)
        if let n = successThreshold, n != 1, kind != .readiness {
            sink.error(t.keyPath("success_threshold"), "'\(t.name("success_threshold"))' must be 1 for a \(kind.rawValue) probe (as in Kubernetes), not \(n)")
        }
        let grace = t.seconds("termination_grace_period_seconds", in: 0...maximumSeconds)
        if grace != nil, kind == .readiness {
            sink.error(
                t.keyPath("termination_grace_period_seconds"),
                "'\(t.name("termination_grace_period_seconds"))' applies to liveness and startup probes only (a failing readiness probe kills nothing)")
        }
        guard sink.diagnostics.errors.count == before, let handler = handlers.first else { return nil }
        var spec = ProbeSpec(handler: handler)
        spec.initialDelay = initialDelay ?? spec.initialDelay
        spec.period = period ?? spec.period
        spec.timeout = timeout ?? spec.timeout
        spec.successThreshold = successThreshold ?? spec.successThreshold
        spec.failureThreshold = failureThreshold ?? spec.failureThreshold
        spec.terminationGracePeriod = grace
        return spec
    }

    /// `headers = { "X-Token" = "..." }`: names are HTTP tokens, values one line. Values are never
    /// put into a message (they may be credentials).
    private static func decodeHeaders(_ h: inout TableReader) -> [HTTPHeader] {
        guard var table = h.table("headers") else { return [] }
        var out: [HTTPHeader] = []
        if table.table.keys.count > maximumHeaders {
            h.sink.error(table.path, "\(table.sectionName) has \(table.table.keys.count) headers; at most \(maximumHeaders)")
            return []
        }
        for (name, _) in table.table.entries {
            let token =
                !name.isEmpty
                && name.utf8.allSatisfy { c in
                    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || "!#$%&'*+-.^_`|~".utf8.contains(c)
                }
            guard let value = table.string(name) else { continue }
            guard token else {
                h.sink.error(table.keyPath(name), "'\(name)' in \(table.sectionName) is not a valid HTTP header name")
                continue
            }
            guard value.utf8.count <= 4096, !value.utf8.contains(where: { $0 == 0x0d || $0 == 0x0a || $0 == 0 }) else {
                h.sink.error(table.keyPath(name), "'\(table.name(name))' must be one line of at most 4096 bytes")
                continue
            }
            out.append(HTTPHeader(name: name, value: value))
        }
        table.finish()
        return out
    }
}
