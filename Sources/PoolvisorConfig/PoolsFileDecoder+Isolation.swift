import PoolvisorCore

extension PoolsFileDecoder {
    struct Isolation {
        var identity: WorkerIdentity?
        var cpus: [Int]?
        var nice: Int?
        var umask: UInt32?
        var resources = Resources()
    }

    /// `user`, `group`, `cpus`, `nice`, `umask` and `[pools.X.resources]`.
    static func decodeIsolation(_ r: inout TableReader, host: some HostProbe) -> Isolation {
        let sink = r.sink
        var out = Isolation()
        let userName = r.string("user")
        let groupName = r.string("group")
        if let userName {
            if let user = host.user(named: userName) {
                var identity = WorkerIdentity(user: user.name, uid: user.uid, gid: user.gid, groups: user.groups, home: user.home)
                if let groupName {
                    if let gid = host.groupID(named: groupName) {
                        identity.gid = gid
                        identity.group = groupName
                    } else {
                        sink.error(r.keyPath("group"), "'\(r.name("group"))': there is no group '\(groupName)' on this host")
                    }
                }
                out.identity = identity
            } else {
                sink.error(r.keyPath("user"), "'\(r.name("user"))': there is no user '\(userName)' on this host")
            }
        } else if groupName != nil {
            sink.error(r.keyPath("group"), "'\(r.name("group"))' needs 'user' (the workers' user; its primary group is replaced by this one)")
        }
        if let text = r.string("cpus") {
            if let cpus = CPUList.parse(text) {
                let missing = cpus.filter { !host.onlineCPUs.contains($0) }
                if missing.isEmpty {
                    out.cpus = cpus
                } else {
                    sink.error(r.keyPath("cpus"), "'\(r.name("cpus"))': this host has no CPU \(CPUList.describe(missing)) (online: \(CPUList.describe(host.onlineCPUs.sorted())))")
                }
            } else {
                sink.error(r.keyPath("cpus"), "'\(r.name("cpus"))' must be a CPU list such as \"0-3,8\", not '\(text)'")
            }
        }
        out.nice = r.integer("nice", in: -20...19)
        if let v = r.value("umask") {
            switch v {
            case .string(let s) where !s.isEmpty && s.count <= 4 && s.allSatisfy({ ("0"..."7").contains($0) }):
                out.umask = UInt32(s, radix: 8)
            case .integer(let n) where (0...0o777).contains(n) && r.sink.writtenValue(r.keyPath("umask"))?.hasPrefix("0o") == true:
                // Only a TOML octal number: `umask = 18` is decimal 18, which is 0o22, not what was meant.
                out.umask = UInt32(n)
            default:
                let decimal = if case .integer(let n) = v, n >= 0 { " (a decimal integer, 0o\(String(n, radix: 8)) in octal)" } else { "" }
                sink.error(
                    r.keyPath("umask"),
                    "'\(r.name("umask"))' must be octal digits in a string such as \"0027\" or a TOML octal number such as 0o027, not \(v.shortDescription)\(decimal)")
            }
        }
        if var res = r.table("resources") {
            func cores(_ key: String) -> Double? {
                guard let v = res.value(key) else { return nil }
                switch v {
                case .integer(let n) where Quantity.coresRange.contains(Double(n)): return Double(n)
                case .float(let f) where Quantity.coresRange.contains(f): return f
                case .string(let s): if let c = Quantity.cores(s) { return c }
                default: break
                }
                sink.error(res.keyPath(key), "'\(res.name(key))' must be a number of cores such as 2, 0.5 or \"500m\", from 0.001 (\"1m\") to 4096, not \(v.shortDescription)")
                return nil
            }
            func bytes(_ key: String) -> Int64? {
                guard let v = res.value(key) else { return nil }
                switch v {
                case .integer(let n) where n > 0: return Int64(n)
                case .string(let s): if let b = Quantity.bytes(s), b > 0 { return b }
                default: break
                }
                sink.error(res.keyPath(key), "'\(res.name(key))' must be a quantity such as \"512Mi\", \"16Gi\" or \"1G\" (Ki, Mi, Gi: powers of 1024; K, M, G: of 1000)")
                return nil
            }
            out.resources.cpuRequest = cores("cpu_request")
            out.resources.cpuLimit = cores("cpu_limit")
            out.resources.memoryRequest = bytes("memory_request")
            out.resources.memoryLimit = bytes("memory_limit")
            out.resources.pidsLimit = res.integer("pids_limit", in: 1...4_194_304)
            if let request = out.resources.cpuRequest, let limit = out.resources.cpuLimit, request > limit {
                sink.error(res.keyPath("cpu_request"), "'\(res.name("cpu_request"))' (\(request)) is more than 'cpu_limit' (\(limit))")
            }
            if let request = out.resources.memoryRequest, let limit = out.resources.memoryLimit, request > limit {
                sink.error(
                    res.keyPath("memory_request"),
                    "'\(res.name("memory_request"))' (\(Quantity.describe(bytes: request))) is more than 'memory_limit' (\(Quantity.describe(bytes: limit)))")
            }
            if let limit = out.resources.memoryLimit, limit < 4 << 20 {
                sink.error(res.keyPath("memory_limit"), "'\(res.name("memory_limit"))' (\(Quantity.describe(bytes: limit))) is too small for any worker to start (at least 4Mi)")
            }
            res.finish()
        }
        return out
    }
}
