import PoolvisorCore
import Yams

/// A value of a Helm values file with the file and line it was written on: what the import reads, merges
/// (`HelmValuesMerge`) and maps to a pools file. Mappings keep the order they were written in.
struct HelmValue: Sendable {
    indirect enum Kind: Sendable {
        case null
        case bool(Bool)
        case integer(Int)
        case float(Double)
        case string(String)
        case list([HelmValue])
        case map([Entry])
    }

    struct Entry: Sendable {
        var key: String
        var value: HelmValue
    }

    var kind: Kind
    var origin: SourceLocation

    /// `integer`, `a string` … for "must be X, not Y".
    var typeDescription: String {
        switch kind {
        case .null: "null"
        case .bool(let b): "\(b) (a boolean)"
        case .integer(let n): "\(n) (an integer)"
        case .float(let f): "\(f) (a number)"
        case .string(let s): "\"\(Printable.visible(String(s.prefix(40))))\(s.count > 40 ? "…" : "")\" (a string)"
        case .list: "a list"
        case .map: "a map"
        }
    }

    /// The entry `key` of a map; nil for a missing key, a null value, or a value that is not a map.
    subscript(key: String) -> HelmValue? {
        guard case .map(let entries) = kind, let v = entries.last(where: { $0.key == key })?.value else { return nil }
        if case .null = v.kind { return nil }
        return v
    }

    var entries: [Entry] {
        if case .map(let entries) = kind { return entries }
        return []
    }
}

/// Why a values file was refused: one diagnostic (the reading stops at the first).
struct Refusal: Error {
    var diagnostic: Diagnostic
    init(_ diagnostic: Diagnostic) { self.diagnostic = diagnostic }
}

/// Reading one values file's text into `HelmValue`s, refusing what could hang or crash the reader.
enum HelmValuesReader {
    /// Deepest nesting accepted (maps and lists together); the chart's deepest key is 8 levels down
    /// (`worker.pools.X.autoscaling.behavior.scaleUp.policies[0].type`).
    static let depthLimit = 32
    /// Bytes of one values file, as the CLI reads it (a regular file of at most 1 MiB).
    static let byteLimit = 1 << 20

    /// The document of `text` (one YAML document; an empty file is an empty map), or the reasons it was refused.
    static func read(_ text: String, file: String) -> Result<HelmValue, Refusal> {
        func refuse(_ line: Int, _ message: String) -> Result<HelmValue, Refusal> {
            .failure(Refusal(Diagnostic(.error, SourceLocation(file: file, line: line), key: "", message)))
        }
        if text.utf8.count > byteLimit { return refuse(0, "larger than 1 MiB, the limit for a values file") }
        switch YAMLPrecheck.scan(text, depthLimit: 2 * depthLimit) {
        case .anchor(let line, let token)?:
            return refuse(
                line,
                "'\(Printable.visible(token))' is a YAML \(token.hasPrefix("&") ? "anchor" : "alias"): anchors and aliases are refused (an alias can stand for a copy of a copy…, billions of values in a few lines); write the values out"
            )
        case .tooDeep(let line)?:
            return refuse(line, "the values nest deeper than \(depthLimit) levels here")
        case nil:
            break
        }
        let parser: Parser
        let root: Node?
        do {
            parser = try Parser(yaml: text)
            root = try parser.singleRoot()
        } catch let error as YamlError {
            return .failure(Refusal(diagnostic(error, file: file)))
        } catch {
            return refuse(0, "not valid YAML: \(error)")
        }
        guard let root else { return .success(HelmValue(kind: .map([]), origin: SourceLocation(file: file, line: 1))) }
        // Anchors are weak references held by the parser: look at them while it lives.
        return withExtendedLifetime(parser) {
            var converter = Converter(file: file)
            return converter.convert(root, depth: 1).mapError { $0 }
        }
    }

    /// A Yams error as `file:line: error: …`, with the problem and no snippet of the file.
    static func diagnostic(_ error: YamlError, file: String) -> Diagnostic {
        func located(_ mark: Mark, _ problem: String, _ context: YamlError.Context?) -> Diagnostic {
            let what = context.map { "\($0.text) at line \($0.mark.line): " } ?? ""
            return Diagnostic(.error, SourceLocation(file: file, line: mark.line, column: mark.column), key: "", "not valid YAML: \(what)\(problem)")
        }
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _), .composer(let context, let problem, let mark, _):
            return located(mark, problem, context)
        case .reader(let problem, let offset, _, _):
            return Diagnostic(.error, SourceLocation(file: file), key: "", "not valid YAML text: \(problem)\(offset.map { " at byte \($0)" } ?? "")")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return Diagnostic(
                .error, SourceLocation(file: file, line: context.mark.line, column: context.mark.column), key: "",
                "a key is written twice in one mapping: \(duplicates.map { "'\($0)'" }.joined(separator: ", "))")
        default:
            return Diagnostic(.error, SourceLocation(file: file), key: "", "not valid YAML: \(error)")
        }
    }

    /// Yams' nodes to `HelmValue`s: scalars typed as YAML 1.1 types them (as Helm's parser does: `yes` is
    /// true), map keys strings, at most `depthLimit` levels, no anchor.
    private struct Converter {
        let file: String

        mutating func convert(_ node: Node, depth: Int) -> Result<HelmValue, Refusal> {
            let origin = SourceLocation(file: file, line: node.mark?.line ?? 0)
            func refuse(_ message: String) -> Result<HelmValue, Refusal> {
                .failure(Refusal(Diagnostic(.error, origin, key: "", message)))
            }
            if depth > HelmValuesReader.depthLimit { return refuse("the values nest deeper than \(HelmValuesReader.depthLimit) levels here") }
            if node.anchor != nil { return refuse("YAML anchors and aliases are refused; write the values out") }
            switch node {
            case .alias:
                return refuse("YAML anchors and aliases are refused; write the values out")
            case .scalar(let scalar):
                return .success(HelmValue(kind: Self.kind(of: scalar), origin: origin))
            case .sequence(let sequence):
                var items: [HelmValue] = []
                for item in sequence {
                    switch convert(item, depth: depth + 1) {
                    case .success(let v): items.append(v)
                    case .failure(let d): return .failure(d)
                    }
                }
                return .success(HelmValue(kind: .list(items), origin: origin))
            case .mapping(let mapping):
                var entries: [HelmValue.Entry] = []
                for (key, value) in mapping {
                    guard case .scalar(let k) = key, key.anchor == nil else {
                        let at = SourceLocation(file: file, line: key.mark?.line ?? origin.line)
                        return .failure(Refusal(Diagnostic(.error, at, key: "", "a map key must be a plain string, not a list or a map")))
                    }
                    switch convert(value, depth: depth + 1) {
                    case .success(let v): entries.append(HelmValue.Entry(key: k.string, value: v))
                    case .failure(let d): return .failure(d)
                    }
                }
                return .success(HelmValue(kind: .map(entries), origin: origin))
            }
        }

        static func kind(of scalar: Node.Scalar) -> HelmValue.Kind {
            let node = Node.scalar(scalar)
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return node.bool.map { .bool($0) } ?? .string(scalar.string)
            case .int:
                if let n = node.int { return .integer(n) }
                // Too large for an Int: kept as a float, so that its range check names it.
                return node.float.map { .float($0) } ?? .string(scalar.string)
            case .float: return node.float.map { .float($0) } ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        }
    }
}
