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
/// process (which runs TOMLKit, see `PoolsFileLoader`) to the supervisor as JSON: see `wire`.
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

// MARK: - The wire form

// `{"parsed":{"table":TABLE,"unreadable":[{"table":["a"],"key":"k"}]}}` or
// `{"syntax_error":{"line":1,"column":2,"message":"…"}}`. A TABLE is `[["key",VALUE],…]` in document
// order; each VALUE one single-key object: `{"s":"text"}`, `{"i":1}`, `{"f":0.5}` (a float JSON cannot
// write: `{"x":"inf"}`), `{"b":true}`, `{"a":[VALUE,…]}`, `{"t":TABLE}`, `{"o":"date"}`. Written with
// `JSONWriter` and read with `JSON.parse`, the control protocol's own coder: Foundation's JSONDecoder
// cost the supervisor 1.9 MiB of resident code for this one answer.
extension ParsedDocument {
    public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// JSON levels per level of TOML nesting (a value's object, its table's array, the pair's array),
    /// so a document as deep as `SourceLocator` allows is always read.
    static let maximumWireDepth = 3 * SourceLocator.maximumDepth + 8

    public var wire: [UInt8] {
        var w = JSONWriter()
        w.object { w in
            switch self {
            case .parsed(let table, let unreadable):
                w.object("parsed") { w in
                    w.key("table")
                    table.write(to: &w)
                    w.array("unreadable") { w in
                        for u in unreadable {
                            w.object { w in
                                w.member("table", u.table)
                                w.member("key", u.key)
                            }
                        }
                    }
                }
            case .syntaxError(let line, let column, let message):
                w.object("syntax_error") { w in
                    w.member("line", line)
                    w.member("column", column)
                    w.member("message", message)
                }
            }
        }
        return w.bytes
    }

    public init(wire bytes: some Collection<UInt8>) throws(WireError) {
        let json: JSON
        do {
            json = try JSON.parse(bytes, maximumDepth: Self.maximumWireDepth)
        } catch {
            throw WireError(description: error.description)
        }
        if let p = json["parsed"] {
            guard let keys = p["unreadable"]?.array else { throw WireError(description: "no unreadable keys") }
            let unreadable = try keys.map { k throws(WireError) in
                guard let key = k["key"]?.string, let table = k["table"]?.array?.compactMap(\.string) else {
                    throw WireError(description: "an unreadable key without its table or name")
                }
                return UnreadableKey(table: table, key: key)
            }
            self = .parsed(try ConfigTable(wire: p["table"]), unreadableKeys: unreadable)
        } else if let e = json["syntax_error"], let line = e["line"]?.int, let column = e["column"]?.int, let message = e["message"]?.string {
            self = .syntaxError(line: Int(clamping: line), column: Int(clamping: column), message: message)
        } else {
            throw WireError(description: "neither a document nor a syntax error")
        }
    }
}

extension ConfigTable {
    func write(to w: inout JSONWriter) {
        w.array { w in
            for (key, value) in entries {
                w.array { w in
                    w.value(key)
                    value.write(to: &w)
                }
            }
        }
    }

    init(wire json: JSON?) throws(ParsedDocument.WireError) {
        guard let pairs = json?.array else { throw .init(description: "a table is not an array of pairs") }
        var entries: [(key: String, value: ConfigValue)] = []
        entries.reserveCapacity(pairs.count)
        for pair in pairs {
            guard let kv = pair.array, kv.count == 2, let key = kv[0].string else { throw .init(description: "a table entry is not a [key, value] pair") }
            entries.append((key, try ConfigValue(wire: kv[1])))
        }
        self.init(entries)
    }
}

extension ConfigValue {
    func write(to w: inout JSONWriter) {
        w.object { w in
            switch self {
            case .string(let s): w.member("s", s)
            case .integer(let n): w.member("i", n)
            case .float(let f) where f.isFinite: w.member("f", f)
            case .float(let f): w.member("x", String(f))
            case .boolean(let b): w.member("b", b)
            case .array(let items): w.array("a") { w in for item in items { item.write(to: &w) } }
            case .table(let t):
                w.key("t")
                t.write(to: &w)
            case .other(let name): w.member("o", name)
            }
        }
    }

    init(wire json: JSON) throws(ParsedDocument.WireError) {
        guard let o = json.object, o.count == 1 else { throw .init(description: "a value must be an object with exactly one kind") }
        let (kind, v) = (o.keys[0], o.values[0])
        switch (kind, v) {
        case ("s", .string(let s)): self = .string(s)
        case ("i", .int(let n)): self = .integer(Int(n))
        case ("f", .double(let f)): self = .float(f)
        case ("f", .int(let n)): self = .float(Double(n))
        case ("x", .string(let text)):
            guard let f = Double(text), !f.isFinite else { throw .init(description: "\"x\" is not inf, -inf or nan") }
            self = .float(f)
        case ("b", .bool(let b)): self = .boolean(b)
        case ("a", .array(let items)):
            var values: [ConfigValue] = []
            values.reserveCapacity(items.count)
            for item in items { values.append(try ConfigValue(wire: item)) }
            self = .array(values)
        case ("t", _): self = .table(try ConfigTable(wire: v))
        case ("o", .string(let name)): self = .other(typeName: name)
        default: throw .init(description: "a value of unknown kind '\(kind)'")
        }
    }
}
