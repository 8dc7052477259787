import PoolvisorConfig
import PoolvisorControl

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
