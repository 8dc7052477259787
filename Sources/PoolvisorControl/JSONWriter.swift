import PoolvisorCore

/// Compact JSON written straight into bytes, member by member, for answers too big to build as a
/// `JSON` tree first (a status of 10,000 workers is 2.8 MB: as a tree it was 16 values and an object
/// per replica, allocated, serialized and freed again). Output is what `JSON.serialized` gives for the
/// same members in the same order: the escaping and number forms below are the only ones.
///
///     var w = JSONWriter()
///     w.object { w in
///         w.member("name", "web")
///         w.member("pid", Int32?.none)
///     }
///     // {"name":"web","pid":null}
public struct JSONWriter {
    public private(set) var bytes: [UInt8]
    /// A value was written at this level, so the next one needs a comma first.
    private var comma = false

    public init(reservingCapacity capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    // MARK: Containers

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "{"))
        body(&self)
        close(UInt8(ascii: "}"))
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "["))
        body(&self)
        close(UInt8(ascii: "]"))
    }

    /// A member whose value is an object: `"key":{…}`.
    public mutating func object(_ key: StaticString, _ body: (inout JSONWriter) -> Void) {
        self.key(key)
        object(body)
    }

    /// A member whose value is an object made from `value`, or null without one.
    public mutating func object<T>(_ key: StaticString, _ value: T?, _ body: (inout JSONWriter, T) -> Void) {
        guard let value else {
            self.key(key)
            return null()
        }
        object(key) { body(&$0, value) }
    }

    /// A member whose value is an array: `"key":[…]`.
    public mutating func array(_ key: StaticString, _ body: (inout JSONWriter) -> Void) {
        self.key(key)
        array(body)
    }

    /// `"key":` — the value written next belongs to it. Keys are the writer's own literals: plain
    /// ASCII that needs no escaping.
    public mutating func key(_ key: StaticString) {
        separate()
        bytes.append(0x22)
        bytes.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        bytes.append(0x22)
        bytes.append(UInt8(ascii: ":"))
        comma = false
    }

    // MARK: Values

    public mutating func value(_ string: String) {
        separate()
        Self.appendQuoted(string, to: &bytes)
    }

    public mutating func value(_ number: Int64) {
        separate()
        Self.appendInteger(number, to: &bytes)
    }

    public mutating func value(_ number: Int) { value(Int64(number)) }

    public mutating func value(_ number: Double) {
        separate()
        Self.appendDouble(number, to: &bytes)
    }

    public mutating func value(_ flag: Bool) {
        separate()
        bytes.append(contentsOf: (flag ? "true" : "false").utf8)
    }

    public mutating func null() {
        separate()
        bytes.append(contentsOf: "null".utf8)
    }

    /// A whole `JSON` value, as `JSON.serialize` writes it.
    public mutating func value(_ json: JSON) {
        separate()
        json.serialize(into: &bytes)
    }

    // MARK: Members

    public mutating func member(_ key: StaticString, _ v: String) { self.key(key); value(v) }
    public mutating func member(_ key: StaticString, _ v: Int) { self.key(key); value(v) }
    public mutating func member(_ key: StaticString, _ v: Double) { self.key(key); value(v) }
    public mutating func member(_ key: StaticString, _ v: Bool) { self.key(key); value(v) }
    public mutating func member(_ key: StaticString, _ v: String?) { self.key(key); if let v { value(v) } else { null() } }
    public mutating func member(_ key: StaticString, _ v: Int?) { self.key(key); if let v { value(v) } else { null() } }
    public mutating func member(_ key: StaticString, _ v: Double?) { self.key(key); if let v { value(v) } else { null() } }
    public mutating func member(_ key: StaticString, _ v: Bool?) { self.key(key); if let v { value(v) } else { null() } }
    public mutating func member(_ key: StaticString, _ v: [String]) {
        array(key) { w in for s in v { w.value(s) } }
    }

    // MARK: -

    private mutating func separate() {
        if comma { bytes.append(UInt8(ascii: ",")) }
        comma = true
    }

    private mutating func open(_ bracket: UInt8) {
        separate()
        bytes.append(bracket)
        comma = false
    }

    private mutating func close(_ bracket: UInt8) {
        bytes.append(bracket)
        comma = true
    }
}

// MARK: - The one form of each scalar (shared with JSON.serialize)

extension JSONWriter {
    /// Decimal digits, without going through a String.
    static func appendInteger(_ number: Int64, to bytes: inout [UInt8]) {
        if number < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = number.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// Swift's shortest round-trip form ("1.0", "0.1", "1e-05", "1e+300", "5e-324", "-0.0") is valid
    /// JSON for every finite value: a digit first, digits after any '.', and an exponent "e", sign,
    /// digits (leading zeros are allowed there). Only "inf" and "nan" are not: they are written null.
    static func appendDouble(_ number: Double, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: (number.isFinite ? number.description : "null").utf8)
    }

    /// Writes `string` quoted, escaping '"', '\', control characters and U+2028/U+2029 (which end a
    /// line in JavaScript); every other character is copied as UTF-8.
    static func appendQuoted(_ string: String, to bytes: inout [UInt8]) {
        bytes.append(0x22)  // "
        var string = string
        string.withUTF8 { appendEscaped($0, to: &bytes) }
        bytes.append(0x22)
    }

    /// The body of ``appendQuoted(_:to:)``. A plain pointer loop comparing with literals, as it runs
    /// per byte and debug builds inline nothing.
    private static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to bytes: inout [UInt8]) {
        guard let base = utf8.baseAddress else { return }
        var runStart = 0  // bytes from here up to `position` are copied as they are
        var position = 0
        while position < utf8.count {
            let byte = base[position]
            let escape: StaticString
            var length = 1  // of what `escape` replaces
            if byte >= 0x20 && byte != 0x22 && byte != 0x5C && byte != 0xE2 {  // not " \ or the start of U+2028/9
                position += 1
                continue
            } else if byte == 0x22 {
                escape = #"\""#
            } else if byte == 0x5C {
                escape = #"\\"#
            } else if byte == 0xE2 {
                guard position + 2 < utf8.count, base[position + 1] == 0x80,
                    base[position + 2] == 0xA8 || base[position + 2] == 0xA9
                else {
                    position += 1
                    continue
                }
                escape = base[position + 2] == 0xA8 ? #"\u2028"# : #"\u2029"#
                length = 3
            } else {
                escape = controlEscapes[Int(byte)]
            }
            bytes.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: position - runStart))
            bytes.append(contentsOf: UnsafeBufferPointer(start: escape.utf8Start, count: escape.utf8CodeUnitCount))
            position += length
            runStart = position
        }
        bytes.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: position - runStart))
    }

    /// The escapes of U+0000 to U+001F: the short forms where JSON has one, else `\u00XX`.
    private static let controlEscapes: [StaticString] = [
        #"\u0000"#, #"\u0001"#, #"\u0002"#, #"\u0003"#, #"\u0004"#, #"\u0005"#, #"\u0006"#, #"\u0007"#,
        #"\b"#, #"\t"#, #"\n"#, #"\u000b"#, #"\f"#, #"\r"#, #"\u000e"#, #"\u000f"#,
        #"\u0010"#, #"\u0011"#, #"\u0012"#, #"\u0013"#, #"\u0014"#, #"\u0015"#, #"\u0016"#, #"\u0017"#,
        #"\u0018"#, #"\u0019"#, #"\u001a"#, #"\u001b"#, #"\u001c"#, #"\u001d"#, #"\u001e"#, #"\u001f"#,
    ]
}
