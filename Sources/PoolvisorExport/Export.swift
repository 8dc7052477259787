import PoolvisorCore

/// `poolvisor export`: a pools file as another platform's configuration. Reads only the `PoolsFile`,
/// which `export` loads with secrets withheld (env files unread), so no secret value can be written.
public enum Export {
    public enum Target: String, Sendable, CaseIterable {
        case kubernetes
        case helmValues = "helm-values"
        case nomad
    }

    public struct Options: Sendable, Equatable {
        /// `metadata.namespace` (Kubernetes), the job's namespace (Nomad); none when nil.
        public var namespace: String?
        /// The container image the workers run from (Kubernetes, Helm values).
        public var image: String?

        public init(namespace: String? = nil, image: String? = nil) {
            self.namespace = namespace
            self.image = image
        }
    }

    /// What an export wrote, and what it could not carry over, pool by pool.
    public struct Rendering: Sendable, Equatable {
        /// In order; `--output -` writes them one after the other.
        public var files: [ExportedFile]
        /// "pool chat: …", also written as comments in the files.
        public var warnings: [String]
    }

    public static func render(_ file: PoolsFile, as target: Target, options: Options = Options()) -> Rendering {
        switch target {
        case .kubernetes: KubernetesExport(file: file, options: options).render()
        case .helmValues: HelmValuesExport(file: file, options: options).render()
        case .nomad: NomadExport(file: file, options: options).render()
        }
    }

    /// The whole rendering as one text: YAML documents separated by `---`, or the one JSON file.
    public static func text(of rendering: Rendering) -> String {
        rendering.files.map(\.text).joined(separator: "---\n")
    }
}

/// Names as Kubernetes (DNS-1123 labels) and Nomad take them: lowercase letters, digits and `-`.
func resourceName(_ parts: String...) -> String {
    let joined = parts.filter { !$0.isEmpty }.joined(separator: "-").lowercased()
    let mapped = String(joined.map { $0.isLetter && $0.isASCII || $0.isNumber && $0.isASCII ? $0 : "-" })
    let trimmed = mapped.split(separator: "-", omittingEmptySubsequences: true).joined(separator: "-")
    return String(trimmed.prefix(63)).trimmingSuffix("-")
}

extension String {
    func trimmingSuffix(_ c: Character) -> String {
        var s = self
        while s.last == c { s.removeLast() }
        return s
    }
}

/// Whole seconds, rounded up (a fraction of a second still waits).
func wholeSeconds(_ d: Duration) -> Int {
    let (seconds, attoseconds) = d.components
    return Int(seconds) + (attoseconds > 0 ? 1 : 0)
}

/// A CPU quantity: `2`, `500m`.
func cpuQuantity(_ cores: Double) -> String {
    let milli = Int((cores * 1000).rounded())
    return milli % 1000 == 0 ? String(milli / 1000) : "\(milli)m"
}

/// A memory quantity in the largest binary unit that divides it: `512Mi`, `16Gi`, or bytes.
func memoryQuantity(_ bytes: Int64) -> String {
    for (unit, size) in [("Ti", Int64(1) << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] where bytes % size == 0 {
        return "\(bytes / size)\(unit)"
    }
    return String(bytes)
}

/// A file name's last component without `.env`: the Kubernetes Secret an env file becomes.
func secretName(for ref: EnvFileReference) -> String {
    var base = String(ref.written.split(separator: "/").last ?? "env")
    if base.hasSuffix(".env") { base.removeLast(4) }
    if base.hasPrefix(".") { base.removeFirst() }
    let name = resourceName(base)
    return name.isEmpty ? "env" : name
}
