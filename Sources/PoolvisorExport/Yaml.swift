import Yams

/// YAML text of `node`, block style, keys in the order given.
func yamlText(_ node: Node) -> String {
    (try? Yams.serialize(node: node, indent: 2, width: -1, allowUnicode: true)) ?? ""
}

/// Building YAML nodes in the order a reader expects, scalars tagged so that a string which looks like
/// a number or a boolean stays a string.
enum Y {
    static func str(_ value: String) -> Node { .scalar(value.represented()) }

    static func int(_ value: Int) -> Node { .scalar(.init(String(value), Tag(.int))) }

    static func bool(_ value: Bool) -> Node { .scalar(.init(value ? "true" : "false", Tag(.bool))) }

    /// A mapping of the pairs whose value is not nil, in order.
    static func map(_ pairs: [(String, Node?)]) -> Node {
        .mapping(.init(pairs.compactMap { key, value in value.map { (str(key), $0) } }))
    }

    static func seq(_ items: [Node]) -> Node { .sequence(.init(items)) }

    static func strings(_ items: [String]) -> Node { seq(items.map(str)) }

    /// nil for an empty mapping or sequence, so that `map` leaves the key out.
    static func nonEmpty(_ node: Node) -> Node? {
        switch node {
        case .mapping(let m): m.isEmpty ? nil : node
        case .sequence(let s): s.isEmpty ? nil : node
        default: node
        }
    }
}

/// One file of an export: its text, and what it would be called in `--output DIR`.
public struct ExportedFile: Sendable, Equatable {
    public var name: String
    public var text: String

    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }
}

/// `# line` for each line of `text`.
func yamlComment(_ lines: [String]) -> String {
    lines.map { $0.isEmpty ? "#\n" : "# \($0)\n" }.joined()
}
