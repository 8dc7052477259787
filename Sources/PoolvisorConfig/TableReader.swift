import PoolvisorCore

/// Collects diagnostics for one file and knows where each key path sits in it.
///
/// The positions are found (a scan of the whole text) only when a diagnostic needs one: a valid file,
/// a reload's usual case, costs none of it.
final class DiagnosticSink {
    let file: String
    private let text: String
    private var foundPositions: SourceLocator?
    private lazy var lines: [Substring] = text.split(separator: "\n", omittingEmptySubsequences: false)
    private(set) var diagnostics: [Diagnostic] = []

    init(file: String, text: String, locator: SourceLocator? = nil) {
        self.file = file
        self.text = text
        foundPositions = locator
    }

    var locator: SourceLocator {
        if let foundPositions { return foundPositions }
        let made = SourceLocator(text: text)
        foundPositions = made
        return made
    }

    /// How the value of `path` is written in the file (`0o027` rather than 23), when its `key =` is
    /// found: the text after the `=` on the key's line.
    func writtenValue(_ path: [String]) -> Substring? {
        guard let (line, column) = locator.locate(path), line >= 1, line <= lines.count else { return nil }
        let rest = lines[line - 1].unicodeScalars.dropFirst(column - 1)
        guard let equals = rest.firstIndex(of: "=") else { return nil }
        return Substring(rest[rest.index(after: equals)...]).drop { $0 == " " || $0 == "\t" }
    }

    func location(_ path: [String]) -> SourceLocation {
        let found = locator.locate(path)
        return SourceLocation(file: file, line: found?.line ?? 0, column: found?.column ?? 0)
    }

    func error(_ path: [String], _ message: String) {
        diagnostics.append(Diagnostic(.error, location(path), key: path.joined(separator: "."), message))
    }

    func warning(_ path: [String], _ message: String) {
        diagnostics.append(Diagnostic(.warning, location(path), key: path.joined(separator: "."), message))
    }

    func append(_ more: [Diagnostic]) { diagnostics += more }
}

/// Reads typed values out of one table, reporting every problem to the sink instead of stopping at
/// the first. Every key the decoder asks for counts as known; `finish()` reports the others as unknown,
/// with the nearest known key as a suggestion.
struct TableReader {
    let path: [String]
    let table: ConfigTable
    let sink: DiagnosticSink
    private var asked: [String] = []

    init(path: [String], table: ConfigTable, sink: DiagnosticSink) {
        self.path = path
        self.table = table
        self.sink = sink
    }

    /// "[pools.default]", or "the top level".
    var sectionName: String { path.isEmpty ? "the top level" : "[\(path.joined(separator: "."))]" }

    func keyPath(_ key: String) -> [String] { path + [key] }

    func name(_ key: String) -> String { keyPath(key).joined(separator: ".") }

    mutating func value(_ key: String) -> ConfigValue? {
        asked.append(key)
        return table[key]
    }

    private func typeError(_ key: String, expected: String, found: ConfigValue) {
        sink.error(keyPath(key), "'\(name(key))' must be \(expected), not \(found.typeDescription)")
    }

    mutating func string(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else { typeError(key, expected: "a string", found: v); return nil }
        return s
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .boolean(let b) = v else { typeError(key, expected: "true or false", found: v); return nil }
        return b
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let v = value(key) else { return nil }
        guard case .integer(let n) = v else { typeError(key, expected: "an integer", found: v); return nil }
        guard range.contains(n) else {
            sink.error(keyPath(key), "'\(name(key))' must be between \(range.lowerBound) and \(range.upperBound), not \(n)")
            return nil
        }
        return n
    }

    /// A number of seconds, integer or fractional.
    mutating func seconds(_ key: String, in range: ClosedRange<Double>) -> Duration? {
        guard let v = value(key) else { return nil }
        let s: Double
        switch v {
        case .integer(let n): s = Double(n)
        case .float(let f): s = f
        default: typeError(key, expected: "a number of seconds", found: v); return nil
        }
        guard range.contains(s) else {
            sink.error(keyPath(key), "'\(name(key))' must be between \(format(range.lowerBound)) and \(format(range.upperBound)) seconds, not \(format(s))")
            return nil
        }
        return .seconds(s)
    }

    /// A replica count (`1`) or a percentage of the pool's replicas (`"25%"`), at least `minimum`.
    mutating func replicaAmount(_ key: String, minimum: Int) -> ReplicaAmount? {
        guard let v = value(key) else { return nil }
        let written: String
        switch v {
        case .integer(let n):
            if n >= minimum && n <= PoolsFileDecoder.maximumReplicas { return .count(n) }
            written = String(n)
        case .string(let s):
            if s.hasSuffix("%"), let p = Int(s.dropLast()), (0...100).contains(p), p >= min(minimum, 1) { return .percent(p) }
            written = "'\(s)'"
        default:
            written = v.typeDescription
        }
        sink.error(keyPath(key), "'\(name(key))' must be a number of replicas (at least \(minimum)) or a percentage such as \"25%\", not \(written)")
        return nil
    }

    /// One of a fixed set of words.
    mutating func choice(_ key: String, _ allowed: [String]) -> String? {
        guard let s = string(key) else { return nil }
        guard allowed.contains(s) else {
            let list = allowed.map { "'\($0)'" }.joined(separator: ", ")
            sink.error(keyPath(key), "'\(name(key))' must be one of \(list), not '\(s)'\(Suggestion.didYouMean(s, allowed))")
            return nil
        }
        return s
    }

    /// An array of strings; with `commaSeparated`, one string "a, b" is accepted as ["a", "b"].
    mutating func strings(_ key: String, commaSeparated: Bool = false) -> [String]? {
        guard let v = value(key) else { return nil }
        switch v {
        case .string(let s) where commaSeparated:
            return s.split(separator: ",").map { trimmed(String($0)) }.filter { !$0.isEmpty }
        case .array(let items):
            var out: [String] = []
            for (n, item) in items.enumerated() {
                guard case .string(let s) = item else {
                    sink.error(keyPath(key), "'\(name(key))' must be an array of strings; element \(n + 1) is \(item.typeDescription)")
                    return nil
                }
                out.append(s)
            }
            return out
        default:
            typeError(key, expected: commaSeparated ? "an array of strings or a comma-separated string" : "an array of strings", found: v)
            return nil
        }
    }

    /// A sub-table; `nil` when absent (or the wrong type, which is reported).
    mutating func table(_ key: String) -> TableReader? {
        guard let v = value(key) else { return nil }
        guard case .table(let t) = v else { typeError(key, expected: "a table", found: v); return nil }
        return TableReader(path: keyPath(key), table: t, sink: sink)
    }

    /// Environment variables from a table: `NAME = "value"`; integers, floats and booleans are written
    /// as strings. Values are never put into a message.
    mutating func environment(_ key: String) -> [(key: String, value: String)]? {
        guard var env = table(key) else { return nil }
        var out: [(key: String, value: String)] = []
        for (name, v) in env.table.entries {
            _ = env.value(name)
            guard EnvironmentName.isValid(name) else {
                sink.error(env.keyPath(name), "'\(name)' in \(env.sectionName) is not a valid environment variable name (letters, digits and '_', not starting with a digit)")
                continue
            }
            switch v {
            case .string(let s): out.append((name, s))
            case .integer(let n): out.append((name, String(n)))
            case .float(let f): out.append((name, String(f)))
            case .boolean(let b): out.append((name, b ? "true" : "false"))
            default:
                sink.error(env.keyPath(name), "'\(env.name(name))' must be a string, not \(v.typeDescription)")
            }
        }
        return out
    }

    /// Reports every key of this table the decoder did not ask for.
    func finish() {
        for key in table.keys where !asked.contains(key) {
            sink.error(keyPath(key), "unknown key '\(key)' in \(sectionName)\(Suggestion.didYouMean(key, asked))")
        }
    }

    private func format(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
    }
}

func trimmed(_ s: String) -> String {
    var scalars = Substring(s).unicodeScalars
    while let f = scalars.first, f == " " || f == "\t" || f == "\r" || f == "\n" { scalars.removeFirst() }
    while let l = scalars.last, l == " " || l == "\t" || l == "\r" || l == "\n" { scalars.removeLast() }
    return String(scalars)
}

enum EnvironmentName {
    static func isValid(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !(("0"..."9").contains(first)) else { return false }
        return name.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}
