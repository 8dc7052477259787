import PoolvisorCore

/// Typed reads of the merged values, each problem a diagnostic with the file, line and key path of the
/// value that has it (`values.yaml:7: error: worker.pools.chat.replicaCount: must be 0…10000, not -1`).
extension HelmValuesImporter {
    mutating func error(_ v: HelmValue, _ path: String, _ message: String) {
        diagnostics.append(Diagnostic(.error, v.origin, key: path, "\(path): \(message)"))
    }

    mutating func warning(_ v: HelmValue, _ path: String, _ message: String) {
        diagnostics.append(Diagnostic(.warning, v.origin, key: path, "\(path): \(message)"))
    }

    mutating func integer(_ v: HelmValue, _ path: String, _ range: ClosedRange<Int>) -> Int? {
        let n: Int
        switch v.kind {
        case .integer(let i): n = i
        case .float(let f) where f.isFinite && f == f.rounded() && abs(f) < 1e15: n = Int(f)
        case .float(let f) where f.isFinite:
            error(v, path, "must be a whole number \(range.lowerBound)…\(range.upperBound), not \(f)")
            return nil
        default:
            error(v, path, "must be an integer \(range.lowerBound)…\(range.upperBound), not \(v.typeDescription)")
            return nil
        }
        guard range.contains(n) else {
            error(v, path, "must be \(range.lowerBound)…\(range.upperBound), not \(n)")
            return nil
        }
        return n
    }

    /// A number within `range`; above 0 when `range` starts at 0 and `positive` is set.
    mutating func number(_ v: HelmValue, _ path: String, _ range: ClosedRange<Double>, positive: Bool = false) -> Double? {
        let x: Double
        switch v.kind {
        case .integer(let i): x = Double(i)
        case .float(let f): x = f
        default:
            error(v, path, "must be a number, not \(v.typeDescription)")
            return nil
        }
        guard x.isFinite, range.contains(x), !positive || x > 0 else {
            let lower = positive ? "above \(TOMLWriter.number(range.lowerBound))" : "from \(TOMLWriter.number(range.lowerBound))"
            error(v, path, "must be a number \(lower) to \(TOMLWriter.number(range.upperBound)), not \(x)")
            return nil
        }
        return x
    }

    mutating func bool(_ v: HelmValue, _ path: String) -> Bool? {
        if case .bool(let b) = v.kind { return b }
        error(v, path, "must be true or false, not \(v.typeDescription)")
        return nil
    }

    /// A string that is not empty (nor only spaces).
    mutating func string(_ v: HelmValue, _ path: String) -> String? {
        guard case .string(let s) = v.kind else {
            error(v, path, "must be a string, not \(v.typeDescription)")
            return nil
        }
        guard s.contains(where: { !$0.isWhitespace }) else {
            error(v, path, "is empty")
            return nil
        }
        return s
    }

    /// A list of strings (`command`, `args`).
    mutating func strings(_ v: HelmValue, _ path: String) -> [String]? {
        guard case .list(let items) = v.kind else {
            error(v, path, "must be a list of strings such as [\"/usr/bin/python3\", \"-m\", \"app.worker\"], not \(v.typeDescription)")
            return nil
        }
        var out: [String] = []
        for (n, item) in items.enumerated() {
            switch item.kind {
            case .string(let s): out.append(s)
            // Kubernetes takes only strings; a number written bare is what was meant.
            case .integer(let i): out.append(String(i))
            case .float(let f) where f.isFinite: out.append("\(f)")
            default:
                error(item, "\(path)[\(n)]", "must be a string, not \(item.typeDescription)")
                return nil
            }
        }
        return out
    }

    /// One of `allowed`.
    mutating func choice(_ v: HelmValue, _ path: String, _ allowed: [String]) -> String? {
        guard let s = string(v, path) else { return nil }
        guard allowed.contains(s) else {
            error(v, path, "must be one of \(allowed.map { "'\($0)'" }.joined(separator: ", ")), not '\(Printable.visible(s))'")
            return nil
        }
        return s
    }

    /// A replica count or a percentage (`2`, `"25%"`), for a disruption budget: TOML text.
    mutating func replicaAmount(_ v: HelmValue, _ path: String) -> String? {
        switch v.kind {
        case .integer:
            return integer(v, path, 0...PoolSpec.maximumReplicas).map(TOMLWriter.number)
        case .string(let s) where s.hasSuffix("%"):
            if let p = Int(s.dropLast()), (0...100).contains(p) { return TOMLWriter.string("\(p)%") }
        default: break
        }
        error(v, path, "must be a number of replicas (0…\(PoolSpec.maximumReplicas)) or a percentage such as \"25%\", not \(v.typeDescription)")
        return nil
    }

    /// The name of an environment variable: letters, digits and `_`, not starting with a digit.
    mutating func environmentName(_ v: HelmValue, _ path: String) -> String? {
        guard let s = string(v, path) else { return nil }
        guard Self.isEnvironmentName(s) else {
            error(v, path, "must be the name of an environment variable (letters, digits and '_', not starting with a digit), not '\(Printable.visible(s))'")
            return nil
        }
        return s
    }

    static func isEnvironmentName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, !("0"..."9").contains(first), s.count <= 255 else { return false }
        return s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }

    /// A pool or instance name as the pools file takes it: 1–63 lowercase letters, digits, `-` or `_`,
    /// starting with a letter or digit.
    static func isPoolName(_ s: String) -> Bool {
        guard (1...63).contains(s.unicodeScalars.count), let first = s.unicodeScalars.first, first != "-", first != "_" else { return false }
        return s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
    }

    static let poolNameRule = "1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit"

    /// A Kubernetes secret's name (a DNS subdomain): it becomes a file name, so no `/` and no `..`.
    static func isSecretName(_ s: String) -> Bool {
        guard (1...253).contains(s.count), !s.contains(".."), let first = s.unicodeScalars.first, let last = s.unicodeScalars.last else { return false }
        func alnum(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("0"..."9").contains(c) }
        return alnum(first) && alnum(last) && s.unicodeScalars.allSatisfy { alnum($0) || $0 == "-" || $0 == "." }
    }
}
