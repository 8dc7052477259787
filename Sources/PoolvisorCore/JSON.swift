// A small JSON value type for the control-socket protocol (JSON lines) and `poolvisor status --json`.
// Standard library only. Output is deterministic: object members are written in insertion order,
// compactly and with one fixed escaping, so the same value always serializes to the same bytes.

/// A JSON value.
///
/// Build values with literals (`["pool": "web", "replicas": 3, "ready": true, "status": nil]`) or the
/// cases, read them with the accessors (`json["pool"]?.string`), write them with ``serialized`` or
/// ``pretty(indent:)`` and read text with ``parse(_:maximumDepth:)-(some Collection<UInt8>,_)``.
///
/// Equality is structural and exact: `.int(1)` and `.double(1)` differ, objects with the same members
/// in a different order differ (they serialize differently), and `.double(.nan)` equals nothing.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// An integer. Parsing gives `.int` for every number without fraction or exponent that fits.
    case int(Int64)
    /// A floating-point number. NaN and the infinities have no JSON form and serialize as `null`.
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

// MARK: - Objects

/// The members of a JSON object, in insertion order (which is also the order they serialize in).
///
/// Setting a key that is already present replaces its value in place; setting `nil` removes it.
/// Note that `object["k"] = nil` removes the member: to store a JSON null write `object["k"] = .null`.
public struct JSONObject: Sendable, Equatable {
    private var storedKeys: [String] = []
    private var storedValues: [JSON] = []
    /// Key → position in `storedKeys`, so that lookups stay cheap in large objects.
    private var positions: [String: Int] = [:]

    /// An empty object.
    public init() {}

    /// The keys in order.
    public var keys: [String] { storedKeys }
    /// The values, in the order of ``keys``.
    public var values: [JSON] { storedValues }
    /// The number of members.
    public var count: Int { storedKeys.count }
    public var isEmpty: Bool { storedKeys.isEmpty }

    /// The value for `key`; setting replaces it in place or appends a new member, `nil` removes it.
    public subscript(key: String) -> JSON? {
        get { positions[key].map { storedValues[$0] } }
        set {
            if let newValue {
                if let position = positions[key] {
                    storedValues[position] = newValue
                } else {
                    positions[key] = storedKeys.count
                    storedKeys.append(key)
                    storedValues.append(newValue)
                }
            } else if let position = positions.removeValue(forKey: key) {
                storedKeys.remove(at: position)
                storedValues.remove(at: position)
                for later in position..<storedKeys.count { positions[storedKeys[later]] = later }
            }
        }
    }

    /// Same keys in the same order with equal values (`positions` follows from `storedKeys`).
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.storedKeys == b.storedKeys && a.storedValues == b.storedValues
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    /// A repeated key keeps its first position and takes its last value, as when parsing.
    public init(dictionaryLiteral elements: (String, JSON)...) {
        for (key, value) in elements { self[key] = value }
    }
}

extension JSONObject: Sequence {
    /// Iterates over the members as `(key, value)` pairs, in order.
    public struct Iterator: IteratorProtocol {
        fileprivate let object: JSONObject
        fileprivate var position = 0

        public mutating func next() -> (key: String, value: JSON)? {
            guard position < object.storedKeys.count else { return nil }
            defer { position += 1 }
            return (object.storedKeys[position], object.storedValues[position])
        }
    }

    public func makeIterator() -> Iterator { Iterator(object: self) }
    public var underestimatedCount: Int { count }
}

extension JSONObject: CustomStringConvertible {
    /// The compact serialization.
    public var description: String { JSON.object(self).serialized }
}

// MARK: - Literals

extension JSON: ExpressibleByNilLiteral {
    /// `nil` is `.null`. (Where a `JSON?` is expected, `nil` is still `Optional.none`.)
    public init(nilLiteral: ()) { self = .null }
}

extension JSON: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension JSON: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
}

extension JSON: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension JSON: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
}

extension JSON: ExpressibleByDictionaryLiteral {
    /// A repeated key keeps its first position and takes its last value, as when parsing.
    public init(dictionaryLiteral elements: (String, JSON)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}

// MARK: - Accessors

extension JSON {
    /// The member named `key` if this is an object that has it, else nil.
    public subscript(key: String) -> JSON? {
        if case .object(let object) = self { object[key] } else { nil }
    }

    /// The element at `index` if this is an array and `index` is in range, else nil.
    public subscript(index: Int) -> JSON? {
        if case .array(let elements) = self, elements.indices.contains(index) { elements[index] } else { nil }
    }

    public var string: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// The value of an `.int`, or of a `.double` that is integral and within Int64's range.
    public var int: Int64? {
        switch self {
        case .int(let value): value
        case .double(let value): Int64(exactly: value)
        default: nil
        }
    }

    /// The value of a `.double`, or of an `.int` (rounded to the nearest Double beyond ±2^53).
    public var double: Double? {
        switch self {
        case .double(let value): value
        case .int(let value): Double(value)
        default: nil
        }
    }

    public var bool: Bool? {
        if case .bool(let value) = self { value } else { nil }
    }

    public var array: [JSON]? {
        if case .array(let elements) = self { elements } else { nil }
    }

    public var object: JSONObject? {
        if case .object(let object) = self { object } else { nil }
    }

    public var isNull: Bool {
        if case .null = self { true } else { false }
    }
}

// MARK: - Serialization

extension JSON: CustomStringConvertible {
    /// The compact serialization.
    public var description: String { serialized }
}

extension JSON {
    /// The compact text: no whitespace at all, members in insertion order. Fit for one JSON line,
    /// since every newline inside a string is escaped.
    public var serialized: String {
        var bytes: [UInt8] = []
        serialize(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the compact UTF-8 text of ``serialized`` to `bytes`.
    public func serialize(into bytes: inout [UInt8]) {
        switch self {
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                element.serialize(into: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            bytes.append(UInt8(ascii: "{"))
            for (position, (key, value)) in object.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                JSON.writeString(key, into: &bytes)
                bytes.append(UInt8(ascii: ":"))
                value.serialize(into: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        default:
            writeScalar(into: &bytes)
        }
    }

    /// Human-readable text: one element or member per line, indented by `indent` spaces per level,
    /// `": "` after keys, `[]` and `{}` for empty containers, no trailing newline.
    public func pretty(indent: Int = 2) -> String {
        var bytes: [UInt8] = []
        writePretty(into: &bytes, indent: max(0, indent), level: 0)
        return String(decoding: bytes, as: UTF8.self)
    }

    private func writePretty(into bytes: inout [UInt8], indent: Int, level: Int) {
        func newline(_ level: Int) {
            bytes.append(UInt8(ascii: "\n"))
            bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent * level))
        }
        switch self {
        case .array(let elements) where !elements.isEmpty:
            bytes.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                newline(level + 1)
                element.writePretty(into: &bytes, indent: indent, level: level + 1)
            }
            newline(level)
            bytes.append(UInt8(ascii: "]"))
        case .object(let object) where !object.isEmpty:
            bytes.append(UInt8(ascii: "{"))
            for (position, (key, value)) in object.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                newline(level + 1)
                JSON.writeString(key, into: &bytes)
                bytes.append(contentsOf: ": ".utf8)
                value.writePretty(into: &bytes, indent: indent, level: level + 1)
            }
            newline(level)
            bytes.append(UInt8(ascii: "}"))
        default:
            serialize(into: &bytes)
        }
    }

    /// Everything but non-empty containers, identically for compact and pretty output.
    private func writeScalar(into bytes: inout [UInt8]) {
        switch self {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let value): bytes.append(contentsOf: (value ? "true" : "false").utf8)
        case .int(let value): bytes.append(contentsOf: String(value).utf8)
        case .double(let value):
            // Swift's shortest round-trip form ("1.0", "0.1", "1e-05", "1e+300", "5e-324", "-0.0") is
            // valid JSON for every finite value: a digit first, digits after any '.', and an exponent
            // "e", sign, digits (leading zeros are allowed there). Only "inf" and "nan" are not.
            bytes.append(contentsOf: (value.isFinite ? value.description : "null").utf8)
        case .string(let value): JSON.writeString(value, into: &bytes)
        case .array: bytes.append(contentsOf: "[]".utf8)
        case .object: bytes.append(contentsOf: "{}".utf8)
        }
    }

    /// Writes `string` quoted, escaping '"', '\', control characters and U+2028/U+2029 (which end a
    /// line in JavaScript); every other character is copied as UTF-8.
    private static func writeString(_ string: String, into bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            var runStart = 0  // bytes from here up to `position` are copied as they are
            var position = 0
            func flush(skipping: Int) {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<position]))
                position += skipping
                runStart = position
            }
            while position < utf8.count {
                let byte = utf8[position]
                switch byte {
                case 0x22, 0x5C:  // " and \
                    flush(skipping: 1)
                    bytes.append(contentsOf: [UInt8(ascii: "\\"), byte])
                case 0..<0x20:
                    flush(skipping: 1)
                    if let letter = shortEscape(byte) {
                        bytes.append(contentsOf: [UInt8(ascii: "\\"), letter])
                    } else {  // \u00XX, lowercase
                        bytes.append(contentsOf: "\\u00".utf8)
                        bytes.append(contentsOf: [hexDigit(byte >> 4), hexDigit(byte & 0xF)])
                    }
                case 0xE2 where position + 2 < utf8.count && utf8[position + 1] == 0x80
                    && (utf8[position + 2] == 0xA8 || utf8[position + 2] == 0xA9):
                    let last = utf8[position + 2]  // A8: U+2028, A9: U+2029
                    flush(skipping: 3)
                    bytes.append(contentsOf: (last == 0xA8 ? "\\u2028" : "\\u2029").utf8)
                default:
                    position += 1
                }
            }
            flush(skipping: 0)
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// The letter of the two-character escape for a control character that has one.
    private static func shortEscape(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x08: UInt8(ascii: "b")
        case 0x09: UInt8(ascii: "t")
        case 0x0A: UInt8(ascii: "n")
        case 0x0C: UInt8(ascii: "f")
        case 0x0D: UInt8(ascii: "r")
        default: nil
        }
    }

    /// The lowercase hex digit for `nibble` (0...15).
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}

// MARK: - Parsing

/// Why a text is not JSON, and where: `offset` counts bytes from the start of the input, from 0.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var offset: Int
    public var message: String

    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }

    /// "invalid JSON at byte 17: expected ',' or '}' after an object member"
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

extension JSON {
    /// Parses one JSON value, strictly as RFC 8259 has it: optional whitespace around a single value;
    /// no comments, trailing commas, leading zeros, NaN or infinities; strings must be valid UTF-8 and
    /// `\u` escapes must pair surrogates. Numbers without fraction or exponent that fit Int64 become
    /// `.int` (so "-0" is `.int(0)`), the others `.double`; a number beyond Double's range is an error.
    /// A repeated object key keeps its first position and takes its last value.
    ///
    /// Arrays and objects may nest `maximumDepth` deep (`[]` is depth 1). The parser itself does not
    /// recurse, but comparing, serializing and destroying a value do, so keep the limit modest.
    public static func parse(
        _ bytes: some Collection<UInt8>, maximumDepth: Int = 64
    ) throws(JSONParseError) -> JSON {
        func run(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<JSON, JSONParseError> {
            Result { () throws(JSONParseError) in
                var parser = JSONParser(bytes: buffer, maximumDepth: maximumDepth)
                return try parser.parseDocument()
            }
        }
        let result = bytes.withContiguousStorageIfAvailable(run) ?? Array(bytes).withUnsafeBufferPointer(run)
        return try result.get()
    }

    /// Parses the UTF-8 of `text`; see ``parse(_:maximumDepth:)-(some Collection<UInt8>,_)``.
    public static func parse(_ text: String, maximumDepth: Int = 64) throws(JSONParseError) -> JSON {
        try parse(text.utf8, maximumDepth: maximumDepth)
    }
}

/// A parser over contiguous bytes. Arrays and objects being parsed live on an explicit stack rather
/// than the call stack, so that `[[[[…` ends in an error, never a stack overflow.
private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let maximumDepth: Int
    var position = 0
    /// Reused buffer for strings that have escapes (those without are decoded straight from `bytes`).
    var scratch: [UInt8] = []

    init(bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    /// An array or object that is open.
    struct Container {
        var isObject: Bool
        var elements: [JSON] = []
        var members = JSONObject()
        /// For an object: the key of the value being parsed.
        var key = ""
    }

    /// The byte at `position`, or 0 at the end. A NUL byte is never valid outside a string, so it
    /// stands in for "end of input" wherever the parser looks ahead.
    var current: UInt8 { position < bytes.count ? bytes[position] : 0 }

    /// "expected …", or at the end of the input "unexpected end of input, expected …".
    func expected(_ what: String) -> JSONParseError {
        let atEnd = position >= bytes.count
        return JSONParseError(offset: position, message: atEnd ? "unexpected end of input, expected \(what)" : "expected \(what)")
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1  // space, tab, LF, CR
            default: return
            }
        }
    }

    mutating func parseDocument() throws(JSONParseError) -> JSON {
        var open: [Container] = []
        var value: JSON
        nextValue: while true {
            // Parse one value, or open a container and go on to its first element or member.
            skipWhitespace()
            let start = position
            switch current {
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                let isObject = current == UInt8(ascii: "{")
                guard open.count < maximumDepth else {
                    throw JSONParseError(offset: start, message: "nested more than \(maximumDepth) levels deep")
                }
                position += 1
                skipWhitespace()
                if current == UInt8(ascii: isObject ? "}" : "]") {
                    position += 1
                    value = isObject ? .object(JSONObject()) : .array([])
                } else if isObject {
                    let key = try parseKey(expecting: "a string key or '}'")
                    open.append(Container(isObject: true, key: key))
                    continue nextValue
                } else {
                    open.append(Container(isObject: false))
                    continue nextValue
                }
            case UInt8(ascii: "\""):
                value = .string(try parseString())
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                value = try parseNumber()
            case UInt8(ascii: "t"):
                try parseLiteral("true")
                value = .bool(true)
            case UInt8(ascii: "f"):
                try parseLiteral("false")
                value = .bool(false)
            case UInt8(ascii: "n"):
                try parseLiteral("null")
                value = .null
            default:
                throw expected("a value")
            }

            // The value is complete: add it to the innermost open container, then either go on to
            // the next element or member, or close that container, which completes a value in turn.
            while !open.isEmpty {
                let innermost = open.count - 1
                skipWhitespace()
                if open[innermost].isObject {
                    let key = open[innermost].key
                    open[innermost].members[key] = value
                    switch current {
                    case UInt8(ascii: ","):
                        try skipComma(closer: "}")
                        open[innermost].key = try parseKey(expecting: "a string key")
                        continue nextValue
                    case UInt8(ascii: "}"):
                        position += 1
                        value = .object(open.removeLast().members)
                    default:
                        throw expected("',' or '}' after an object member")
                    }
                } else {
                    open[innermost].elements.append(value)
                    switch current {
                    case UInt8(ascii: ","):
                        try skipComma(closer: "]")
                        continue nextValue
                    case UInt8(ascii: "]"):
                        position += 1
                        value = .array(open.removeLast().elements)
                    default:
                        throw expected("',' or ']' after an array element")
                    }
                }
            }
            skipWhitespace()
            guard position == bytes.count else {
                throw JSONParseError(offset: position, message: "unexpected data after the value")
            }
            return value
        }
    }

    /// Steps over the ',' at `position` and the whitespace after it; a `closer` next is an error.
    mutating func skipComma(closer: Unicode.Scalar) throws(JSONParseError) {
        let comma = position
        position += 1
        skipWhitespace()
        if current == UInt8(ascii: closer) {
            throw JSONParseError(offset: comma, message: "trailing comma before '\(closer)'")
        }
    }

    /// A member's key and the ':' after it.
    mutating func parseKey(expecting what: String) throws(JSONParseError) -> String {
        guard current == UInt8(ascii: "\"") else { throw expected(what) }
        let key = try parseString()
        skipWhitespace()
        guard current == UInt8(ascii: ":") else { throw expected("':' after an object key") }
        position += 1
        return key
    }

    mutating func parseLiteral(_ literal: StaticString) throws(JSONParseError) {
        let start = position
        for byte in UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount) {
            guard current == byte else { throw JSONParseError(offset: start, message: "expected '\(literal)'") }
            position += 1
        }
    }

    // MARK: Numbers

    mutating func parseNumber() throws(JSONParseError) -> JSON {
        let start = position
        let negative = current == UInt8(ascii: "-")
        if negative { position += 1 }

        // Integer part, accumulated as a negative number so that Int64.min fits.
        var integer: Int64 = 0
        var fitsInt64 = true
        switch current {
        case UInt8(ascii: "0"):
            position += 1
            if isDigit(current) { throw JSONParseError(offset: start, message: "leading zeros are not allowed") }
        case UInt8(ascii: "1")...UInt8(ascii: "9"):
            while isDigit(current) {
                let (times10, overflow1) = integer.multipliedReportingOverflow(by: 10)
                let (next, overflow2) = times10.subtractingReportingOverflow(Int64(current - UInt8(ascii: "0")))
                if overflow1 || overflow2 { fitsInt64 = false }
                integer = next
                position += 1
            }
        default:
            throw expected("a digit after '-'")
        }

        var isInteger = true
        if current == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard isDigit(current) else { throw expected("a digit after the decimal point") }
            while isDigit(current) { position += 1 }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            isInteger = false
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard isDigit(current) else { throw expected("a digit in the exponent") }
            while isDigit(current) { position += 1 }
        }

        if isInteger && fitsInt64 {
            if negative { return .int(integer) }
            if integer != .min { return .int(-integer) }  // 9223372036854775808 does not fit
        }
        // The text is a valid JSON number, which Double's own parser (correctly rounded) accepts.
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else {
            throw JSONParseError(offset: start, message: "number out of range")
        }
        return .double(double)
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    // MARK: Strings

    /// A string starting at the '"' at `position`; leaves `position` after the closing '"'.
    mutating func parseString() throws(JSONParseError) -> String {
        let quote = position
        position += 1
        var runStart = position  // bytes from here up to `position` need no unescaping
        var hasEscapes = false
        scratch.removeAll(keepingCapacity: true)
        while true {
            guard position < bytes.count else { throw JSONParseError(offset: quote, message: "unterminated string") }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                break
            } else if byte == UInt8(ascii: "\\") {
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<position]))
                try parseEscape(quote: quote)
                runStart = position
                hasEscapes = true
            } else if byte < 0x20 {
                throw JSONParseError(offset: position, message: "unescaped control character in a string")
            } else if byte < 0x80 {
                position += 1
            } else {
                try skipUTF8Sequence()
            }
        }
        let run = UnsafeBufferPointer(rebasing: bytes[runStart..<position])
        position += 1
        // Both are valid UTF-8 by now, so String(decoding:) repairs nothing.
        if !hasEscapes { return String(decoding: run, as: UTF8.self) }
        scratch.append(contentsOf: run)
        return String(decoding: scratch, as: UTF8.self)
    }

    /// The escape sequence at `position` (a '\'), appended to `scratch` as UTF-8.
    mutating func parseEscape(quote: Int) throws(JSONParseError) {
        let backslash = position
        guard position + 1 < bytes.count else { throw JSONParseError(offset: quote, message: "unterminated string") }
        let letter = bytes[position + 1]
        position += 2
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(letter)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try parseHex4(backslash: backslash)
            let scalar: UInt32
            switch unit {
            case 0xD800...0xDBFF:
                // A high surrogate must be followed at once by a \u escape of a low one.
                let unpaired = JSONParseError(offset: backslash, message: "unpaired surrogate in a \\u escape")
                guard current == UInt8(ascii: "\\"), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u")
                else { throw unpaired }
                position += 2
                let low = try parseHex4(backslash: position - 2)
                guard (0xDC00...0xDFFF).contains(low) else { throw unpaired }
                scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            case 0xDC00...0xDFFF:
                throw JSONParseError(offset: backslash, message: "unpaired surrogate in a \\u escape")
            default:
                scalar = unit
            }
            scratch.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar)!)!)
        default:
            throw JSONParseError(offset: backslash, message: "invalid escape sequence")
        }
    }

    /// Four hex digits at `position`, the rest of a `\u` escape whose '\' is at `backslash`.
    mutating func parseHex4(backslash: Int) throws(JSONParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            let digit: UInt8
            switch current {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = current - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = current - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = current - UInt8(ascii: "A") + 10
            default: throw JSONParseError(offset: backslash, message: "expected four hex digits after '\\u'")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// Steps over the multi-byte UTF-8 sequence at `position`, which must be well-formed (Unicode
    /// table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF, no truncation).
    mutating func skipUTF8Sequence() throws(JSONParseError) {
        let lead = bytes[position]
        var length = 0
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: break  // a continuation byte, C0, C1 or F5 and above
        }
        guard length > 0, position + length <= bytes.count, secondRange.contains(bytes[position + 1]),
              (2..<length).allSatisfy({ (0x80...0xBF).contains(bytes[position + $0]) })
        else { throw JSONParseError(offset: position, message: "invalid UTF-8 in a string") }
        position += length
    }
}
