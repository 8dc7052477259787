import PoolvisorCore

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

extension ConfigValue {
    /// The value as a message shows it: numbers and booleans as written, a string quoted (escaped and
    /// shortened by `Printable`), anything else by its type. Only for keys whose values are not secret.
    public var shortDescription: String {
        switch self {
        case .string(let s): "'\(Printable.escaped(s, limit: 40))'"
        case .integer(let n): String(n)
        case .float(let f): String(f)
        case .boolean(let b): b ? "true" : "false"
        case .array, .table, .other: typeDescription
        }
    }
}

/// What parsing a pools file's TOML gives: its values, or the syntax error. It crosses from the parser
/// process (which runs TOMLKit, see `PoolsFileLoader`) to the supervisor as JSON: see ParsedDocument+Wire.swift.
public enum ParsedDocument: Sendable, Equatable {
    /// The document, and keys the parser found but could not hand over (a key containing NUL).
    case parsed(ConfigTable, unreadableKeys: [UnreadableKey])
    case syntaxError(line: Int, column: Int, message: String)
}

/// A key the parser reported in a table but could not return a value for.
public struct UnreadableKey: Sendable, Equatable {
    /// The table it is in ([] for the top level).
    public var table: [String]
    /// The key as far as the parser could give it (cut at a NUL).
    public var key: String

    public init(table: [String], key: String) {
        self.table = table
        self.key = key
    }
}
