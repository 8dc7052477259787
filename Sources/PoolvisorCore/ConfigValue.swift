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

/// Text from a file or a client, made safe to print in a message or a terminal: control characters
/// (a newline, NUL, ESC) and the invisible direction marks that reorder what a terminal shows
/// (U+202E and its kin) are written as `\u{…}`, and long text is cut with "…".
public enum Printable {
    public static func escaped(_ text: String, limit: Int = 80) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                out += "…"
                break
            }
            count += 1
            switch scalar {
            case "\\": out += "\\\\"
            case "'": out += "\\'"
            default:
                if isInvisible(scalar) { out += "\\u{\(String(scalar.value, radix: 16))}" } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out
    }

    /// `text` with only its invisible characters escaped (see `isInvisible`); quotes stay as they are.
    public static func visible(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isInvisible) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if isInvisible(scalar) { out += "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars } else { out.append(scalar) }
        }
        return String(out)
    }

    /// Control characters, and the Unicode format characters that change how text around them is
    /// shown: bidirectional overrides, isolates and marks, zero-width characters, the BOM.
    static func isInvisible(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x00...0x1F, 0x7F...0x9F: true
        case 0x200B...0x200F, 0x202A...0x202E, 0x2060...0x2069, 0x061C, 0xFEFF: true
        default: false
        }
    }
}

/// What parsing a pools file's TOML gives: its values, or the syntax error. It crosses from the parser
/// process (which runs TOMLKit, see `PoolsFileLoader`) to the supervisor as JSON, hence `Codable`.
public enum ParsedDocument: Sendable, Equatable, Codable {
    /// The document, and keys the parser found but could not hand over (a key containing NUL).
    case parsed(ConfigTable, unreadableKeys: [UnreadableKey])
    case syntaxError(line: Int, column: Int, message: String)
}

/// A key the parser reported in a table but could not return a value for.
public struct UnreadableKey: Sendable, Equatable, Codable {
    /// The table it is in ([] for the top level).
    public var table: [String]
    /// The key as far as the parser could give it (cut at a NUL).
    public var key: String

    public init(table: [String], key: String) {
        self.table = table
        self.key = key
    }
}

// The wire form: each value one single-key object, `{"s": "text"}`, `{"i": 1}`, `{"f": 0.5}` (a float
// that JSON cannot write, `{"x": "inf"}`), `{"b": true}`, `{"a": [...]}`, `{"t": [["key", value], ...]}`
// (in document order), `{"o": "date"}`.
extension ConfigValue: Codable {
    private enum Kind: String, CodingKey { case s, i, f, x, b, a, t, o }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Kind.self)
        switch self {
        case .string(let s): try c.encode(s, forKey: .s)
        case .integer(let n): try c.encode(n, forKey: .i)
        case .float(let f) where f.isFinite: try c.encode(f, forKey: .f)
        case .float(let f): try c.encode(String(f), forKey: .x)
        case .boolean(let b): try c.encode(b, forKey: .b)
        case .array(let items): try c.encode(items, forKey: .a)
        case .table(let t): try c.encode(t, forKey: .t)
        case .other(let name): try c.encode(name, forKey: .o)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Kind.self)
        guard c.allKeys.count == 1, let kind = c.allKeys.first else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "a value must have exactly one kind"))
        }
        switch kind {
        case .s: self = .string(try c.decode(String.self, forKey: .s))
        case .i: self = .integer(try c.decode(Int.self, forKey: .i))
        case .f: self = .float(try c.decode(Double.self, forKey: .f))
        case .x:
            guard let f = Double(try c.decode(String.self, forKey: .x)), !f.isFinite else {
                throw DecodingError.dataCorruptedError(forKey: .x, in: c, debugDescription: "not inf, -inf or nan")
            }
            self = .float(f)
        case .b: self = .boolean(try c.decode(Bool.self, forKey: .b))
        case .a: self = .array(try c.decode([ConfigValue].self, forKey: .a))
        case .t: self = .table(try c.decode(ConfigTable.self, forKey: .t))
        case .o: self = .other(typeName: try c.decode(String.self, forKey: .o))
        }
    }
}

extension ConfigTable: Codable {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.unkeyedContainer()
        for (key, value) in entries {
            var pair = c.nestedUnkeyedContainer()
            try pair.encode(key)
            try pair.encode(value)
        }
    }

    public init(from decoder: any Decoder) throws {
        var c = try decoder.unkeyedContainer()
        var entries: [(key: String, value: ConfigValue)] = []
        while !c.isAtEnd {
            var pair = try c.nestedUnkeyedContainer()
            let key = try pair.decode(String.self)
            entries.append((key, try pair.decode(ConfigValue.self)))
        }
        self.init(entries)
    }
}
