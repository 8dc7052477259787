/// A parsed TOML document as plain values. The edge converts TOMLKit's tree into this, so that every
/// rule about what a pools file may contain lives in the core and is tested without a parser.
public indirect enum ConfigValue: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    case array([ConfigValue])
    case table(ConfigTable)
    /// Dates and times: valid TOML, never valid in a pools file.
    case other(typeName: String)

    /// "a string", "an integer", … for messages.
    public var typeDescription: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .boolean: "a boolean"
        case .array: "an array"
        case .table: "a table"
        case .other(let name): "a \(name)"
        }
    }
}

/// A TOML table with its keys in document order (or the parser's order).
public struct ConfigTable: Sendable, Equatable {
    public var entries: [(key: String, value: ConfigValue)]

    public init(_ entries: [(key: String, value: ConfigValue)] = []) { self.entries = entries }

    public subscript(key: String) -> ConfigValue? { entries.first { $0.key == key }?.value }

    public var keys: [String] { entries.map(\.key) }

    public static func == (a: ConfigTable, b: ConfigTable) -> Bool {
        a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}
