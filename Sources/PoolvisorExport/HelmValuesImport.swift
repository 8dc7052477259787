import PoolvisorCore

/// `poolvisor import helm-values`: the `worker` section of the seed chart's Helm values (several files
/// merged as `helm -f` merges them) as a pools file. Pure: it takes the files' names and texts and returns
/// the TOML text, or the errors, with every finding located (`values.yaml:7: error: worker.pools.chat.
/// replicaCount: must be 0…10000, not -1`). The keys are the chart's, as `export helm-values` writes them.
public enum HelmValuesImport {
    public static let defaultEnvDirectory = "/etc/poolvisor/env"

    public struct File: Sendable {
        public var name: String
        public var text: String
        public init(name: String, text: String) {
            self.name = name
            self.text = text
        }
    }

    public struct Options: Sendable {
        /// Where each `envSecretRef` secret's keys go: `<envDirectory>/<secret>.env`.
        public var envDirectory: String
        /// `[supervisor] name`: the instance (`--instance`), else the Helm release (`--release`).
        public var instance: String
        /// The worker's argv when the values name no `worker.command` (`--command`).
        public var command: [String]?

        public init(envDirectory: String = HelmValuesImport.defaultEnvDirectory, instance: String = "poolvisor", command: [String]? = nil) {
            self.envDirectory = envDirectory
            self.instance = instance
            self.command = command
        }
    }

    public struct Output: Sendable {
        /// The pools file; nil when there is an error.
        public var toml: String?
        public var diagnostics: [Diagnostic]
    }

    public static func convert(_ files: [File], options: Options = Options()) -> Output {
        var documents: [HelmValue] = []
        var diagnostics: [Diagnostic] = []
        for file in files {
            switch HelmValuesReader.read(file.text, file: file.name) {
            case .success(let value):
                guard case .map = value.kind else {
                    diagnostics.append(Diagnostic(.error, value.origin, key: "", "the values must be a map of keys (worker: …), not \(value.typeDescription)"))
                    continue
                }
                documents.append(value)
            case .failure(let refusal):
                diagnostics.append(refusal.diagnostic)
            }
        }
        guard !diagnostics.hasErrors, let merged = HelmValuesMerge.merge(documents) else { return Output(toml: nil, diagnostics: diagnostics) }
        var importer = HelmValuesImporter(options: options, files: files.map(\.name))
        let text = importer.run(merged)
        return Output(toml: importer.diagnostics.hasErrors ? nil : text, diagnostics: importer.diagnostics)
    }
}

/// The mapping itself, over the merged values; collects every problem at once.
struct HelmValuesImporter {
    let options: HelmValuesImport.Options
    let files: [String]
    var diagnostics: [Diagnostic] = []
    /// Whether some pool is autoscaled with type keda (then `[keda]` names the connection variable).
    var kedaPools = false
    /// `worker.keda`, for the pools' checks of their triggers.
    var globalKeda: HelmValue?

    init(options: HelmValuesImport.Options, files: [String]) {
        self.options = options
        self.files = files
    }

    /// Chart keys with no meaning on one host: a comment in the output, no warning.
    static let notOnOneHost: [String: String] = {
        var out: [String: String] = [:]
        for key in ["affinity", "nodeSelector", "tolerations", "topologySpreadConstraints", "priorityClassName", "nodeName", "schedulerName"] {
            out[key] = "placing pods on nodes does not apply on one host"
        }
        for key in ["image", "imagePullPolicy", "imagePullSecrets"] {
            out[key] = "the pools file runs `command` on this host, not a container image"
        }
        for key in ["podAnnotations", "podLabels", "annotations", "labels", "nameOverride", "fullnameOverride"] {
            out[key] = "Kubernetes metadata, nothing to name on one host"
        }
        for key in ["serviceAccount", "serviceAccountName", "automountServiceAccountToken"] { out[key] = "no Kubernetes API to reach from one host" }
        for key in ["securityContext", "podSecurityContext"] { out[key] = "a pool's `user`, `group` and `umask` say whom its workers run as" }
        for key in ["volumes", "volumeMounts", "extraVolumes", "extraVolumeMounts"] { out[key] = "the workers see this host's files" }
        for key in ["strategy", "revisionHistoryLimit", "minReadySeconds"] { out[key] = "a reload replaces workers as [pools.NAME.rollout] says" }
        return out
    }()

    /// Chart keys poolvisor has its own form of, not converted: a comment and a warning.
    static let writeByHand: [String: String] = [
        "livenessProbe": "write it as [pools.NAME.liveness_probe] (docs/pools-file.md, Probes)",
        "readinessProbe": "write it as [pools.NAME.readiness_probe] (docs/pools-file.md, Probes)",
        "startupProbe": "write it as [pools.NAME.startup_probe] (docs/pools-file.md, Probes)",
        "lifecycle": "a pool's `stop_signal` and `drain_seconds` say how its workers stop",
    ]

    mutating func run(_ values: HelmValue) -> String {
        var out = TOMLWriter()
        out.comment(
            """
            A poolvisor pools file, imported from the `worker` section of the Helm values
            \(files.joined(separator: ", "))\(files.count > 1 ? " (merged in this order, as helm -f merges them)" : "")
            by `poolvisor import helm-values`. Check it with `poolvisor check -c FILE`: the env files it names
            must exist first (each env_file has a comment saying what goes in it).
            """)
        let others = values.entries.map(\.key).filter { $0 != "worker" }
        if !others.isEmpty {
            out.comment("Not imported: the values' other sections (\(others.joined(separator: ", "))); only `worker` runs here.")
        }
        guard let worker = values["worker"] else {
            error(values, "worker", "no `worker` section in the values: nothing to import")
            return ""
        }
        guard case .map = worker.kind else {
            error(worker, "worker", "must be a map (pools: …, keda: …), not \(worker.typeDescription)")
            return ""
        }

        // worker-wide keys
        var notes: [String] = []
        var command: [String]? = nil
        var args: [String]? = nil
        for entry in worker.entries {
            let path = "worker.\(entry.key)"
            switch entry.key {
            case "pools", "keda", "envSecretRef", "env", "terminationGracePeriodSeconds": break
            case "command": command = strings(entry.value, path)
            case "args": args = strings(entry.value, path)
            default: note(entry, path, into: &notes)
            }
        }
        if !notes.isEmpty {
            out.blankLine()
            out.comment("Not imported from the worker section:\n" + notes.map { "  \($0)" }.joined(separator: "\n"))
        }

        globalKeda = worker["keda"]
        var pools: [String] = []
        if let p = worker["pools"] {
            guard case .map(let entries) = p.kind else {
                error(p, "worker.pools", "must be a map of pools (default: …, chat: …), not \(p.typeDescription)")
                return ""
            }
            for entry in entries {
                let path = "worker.pools.\(entry.key)"
                if case .null = entry.value.kind { continue }
                guard case .map = entry.value.kind else {
                    error(entry.value, path, "must be a map of the pool's keys (replicaCount: …), not \(entry.value.typeDescription)")
                    continue
                }
                guard Self.isPoolName(entry.key) else {
                    error(entry.value, path, "'\(Printable.visible(entry.key))' cannot be a pool's name: a pool name is \(Self.poolNameRule)")
                    continue
                }
                pools.append(pool(entry.key, entry.value, command: command, args: args))
            }
        }
        if pools.isEmpty && !diagnostics.hasErrors {
            error(worker, "worker.pools", "no pool: nothing to import")
        }

        out.table(["supervisor"])
        if !Self.isPoolName(options.instance) {
            diagnostics.append(
                Diagnostic(.error, SourceLocation(file: "--instance"), key: "", "'\(Printable.visible(options.instance))' cannot be an instance's name: it is \(Self.poolNameRule)")
            )
        }
        out.line("name", TOMLWriter.string(options.instance))
        if let ref = worker["envSecretRef"] { envFile(ref, "worker.envSecretRef", into: &out) }
        if let grace = worker["terminationGracePeriodSeconds"], let s = number(grace, "worker.terminationGracePeriodSeconds", 0...604_800) {
            out.line("drain_seconds", TOMLWriter.number(s))
        }
        if let env = worker["env"] { environment(env, "worker.env", table: ["env"], into: &out) }
        keda(worker["keda"], into: &out)
        for text in pools {
            out.blankLine()
            out.append(text)
        }
        return out.text
    }

    /// A key the import does not convert: its comment line, and a warning unless it is one of the chart's
    /// Kubernetes-only keys.
    mutating func note(_ entry: HelmValue.Entry, _ path: String, into notes: inout [String]) {
        if let why = Self.notOnOneHost[entry.key] {
            notes.append("\(path): \(why)")
        } else if let why = Self.writeByHand[entry.key] {
            notes.append("\(path): \(why)")
            warning(entry.value, path, "not imported: \(why)")
        } else {
            notes.append("\(path): not a key of the chart that poolvisor knows")
            warning(entry.value, path, "unknown key, not imported")
        }
    }

    /// `envSecretRef: NAME` (or `{name: NAME}`): `env_file = "<env-dir>/NAME.env"`, with how to fill it.
    mutating func envFile(_ ref: HelmValue, _ path: String, into out: inout TOMLWriter) {
        var name: String?
        switch ref.kind {
        case .string: name = string(ref, path)
        case .map: name = ref["name"].flatMap { string($0, "\(path).name") }
        default: error(ref, path, "must be the name of a Kubernetes secret, not \(ref.typeDescription)")
        }
        guard let name else { return }
        guard Self.isSecretName(name) else {
            error(ref, path, "'\(Printable.visible(name))' is not a Kubernetes secret's name (lowercase letters, digits, '-' and '.', at most 253)")
            return
        }
        var directory = options.envDirectory
        while directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
        let file = "\(directory)/\(name).env"
        out.comment(
            """
            \(path): the Kubernetes secret '\(name)'. Write its keys to this file as KEY=value, mode 0600:
              kubectl get secret \(name) -o json | jq -r '.data | map_values(@base64d) | to_entries[] | "\\(.key)=\\(.value)"' > \(file)
            """)
        out.line("env_file", TOMLWriter.string(file))
    }

    /// `env: [{name, value}]` as `[env]` or `[pools.NAME.env]`; `valueFrom` entries are left to env files.
    mutating func environment(_ v: HelmValue, _ path: String, table: [String], into out: inout TOMLWriter) {
        guard case .list(let items) = v.kind else {
            error(v, path, "must be a list of {name, value}, not \(v.typeDescription)")
            return
        }
        var lines: [(String, String)] = []
        var notes: [String] = []
        for (n, item) in items.enumerated() {
            let itemPath = "\(path)[\(n)]"
            guard let nameValue = item["name"], let name = environmentName(nameValue, "\(itemPath).name") else {
                if item["name"] == nil { error(item, itemPath, "needs a 'name'") }
                continue
            }
            if item["valueFrom"] != nil {
                notes.append("\(name) comes from valueFrom (a secret or a field of the pod): set it in an env file")
                warning(item, itemPath, "\(name) comes from valueFrom, not imported: set it in an env file")
                continue
            }
            switch item["value"]?.kind {
            case .string(let s)?: lines.append((name, TOMLWriter.string(s)))
            case .integer(let i)?: lines.append((name, TOMLWriter.string(String(i))))
            case .float(let f)? where f.isFinite: lines.append((name, TOMLWriter.string("\(f)")))
            case .bool(let b)?: lines.append((name, TOMLWriter.string(String(b))))
            case nil: lines.append((name, TOMLWriter.string("")))
            default: error(item, "\(itemPath).value", "must be a string, not \(item["value"]!.typeDescription)")
            }
        }
        guard !lines.isEmpty || !notes.isEmpty else { return }
        out.table(table)
        for n in notes { out.comment(n) }
        for (k, v) in lines { out.line(k, v) }
    }
}
