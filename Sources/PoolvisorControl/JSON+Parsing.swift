import PoolvisorCore

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
    /// A key that appears twice in one object, at any depth, is an error ("duplicate key 'command'"):
    /// RFC 8259 leaves its meaning open, and a request that says two things must not do either.
    ///
    /// Arrays and objects may nest `maximumDepth` deep (`[]` is depth 1). The parser itself does not
    /// recurse, but comparing, serializing and destroying a value do, so keep the limit modest.
    public static func parse(
        _ bytes: some Collection<UInt8>, maximumDepth: Int = 64
    ) throws(JSONParseError) -> JSON {
        func run(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<JSON, JSONParseError> {
            // Only an empty buffer may lack an address.
            guard let base = buffer.baseAddress else { return .failure(JSONParser.expected("a value", at: 0, count: 0)) }
            return Result { () throws(JSONParseError) in
                var parser = JSONParser(base: base, count: buffer.count, maximumDepth: maximumDepth)
                return try parser.parseDocument()
            }
        }
        let result = bytes.withContiguousStorageIfAvailable(run) ?? Array(bytes).withUnsafeBufferPointer(run)
        return try result.get()
    }

    /// Parses the UTF-8 of `text`, as the byte-collection overload does.
    public static func parse(_ text: String, maximumDepth: Int = 64) throws(JSONParseError) -> JSON {
        try parse(text.utf8, maximumDepth: maximumDepth)
    }
}

/// A parser over contiguous bytes. Arrays and objects being parsed live on an explicit stack rather
/// than the call stack, so that `[[[[…` ends in an error, never a stack overflow.
///
/// It is written to be quick in debug builds too, which inline nothing and copy values freely:
/// - it reads through a plain pointer, checking `position < count` itself (UnsafeBufferPointer and
///   its slices cost a generic call per byte);
/// - it holds nothing reference-counted, as each call of a non-mutating method copies `self`;
/// - the innermost open container is a local variable, as reading a field of an array element
///   copies the whole element;
/// - it compares bytes with literals (`UInt8(ascii:)` is a call each time), hence the comments.
private struct JSONParser {
    let base: UnsafePointer<UInt8>
    let count: Int
    let maximumDepth: Int
    var position = 0

    init(base: UnsafePointer<UInt8>, count: Int, maximumDepth: Int) {
        self.base = base
        self.count = count
        self.maximumDepth = maximumDepth
    }

    /// An array or object that is open.
    struct Container {
        var isObject: Bool
        var elements: [JSON] = []
        var members = JSONObject()
        /// For an object: the key of the member whose value is being parsed.
        var key = ""
    }

    /// The byte at `position`, or 0 at the end. A NUL byte is never valid outside a string, so it
    /// stands in for "end of input" wherever the parser looks ahead.
    var current: UInt8 { position < count ? base[position] : 0 }

    /// The `length` bytes at `start`.
    func bytes(from start: Int, length: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: base + start, count: length)
    }

    /// "expected …", or at the end of the input "unexpected end of input, expected …".
    func expected(_ what: String) -> JSONParseError { Self.expected(what, at: position, count: count) }

    static func expected(_ what: String, at offset: Int, count: Int) -> JSONParseError {
        JSONParseError(offset: offset, message: offset >= count ? "unexpected end of input, expected \(what)" : "expected \(what)")
    }

    mutating func skipWhitespace() {
        while position < count {
            let byte = base[position]
            guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }  // space LF CR tab
            position += 1
        }
    }

    mutating func parseDocument() throws(JSONParseError) -> JSON {
        var depth = 0  // open containers: `innermost` and those in `enclosing`
        var innermost = Container(isObject: false)  // meaningful while depth > 0
        var enclosing: [Container] = []  // outermost first
        var scratch: [UInt8] = []  // reused for strings that have escapes
        var value: JSON
        nextValue: while true {
            // Parse one value, or open a container and go on to its first element or member.
            skipWhitespace()
            switch current {
            case 0x5B, 0x7B:  // [ {
                let isObject = current == 0x7B
                guard depth < maximumDepth else {
                    throw JSONParseError(offset: position, message: "nested more than \(maximumDepth) levels deep")
                }
                position += 1
                skipWhitespace()
                if current == (isObject ? 0x7D : 0x5D) {  // } ]
                    position += 1
                    value = isObject ? .object(JSONObject()) : .array([])
                } else {
                    let key = isObject ? try parseKey(expecting: "a string key or '}'", scratch: &scratch) : ""
                    if depth > 0 { enclosing.append(innermost) }
                    innermost = Container(isObject: isObject, key: key)
                    depth += 1
                    continue nextValue
                }
            case 0x22:  // "
                value = .string(try parseString(scratch: &scratch))
            case 0x2D, 0x30...0x39:  // - 0-9
                value = try parseNumber()
            case 0x74:  // t
                try parseLiteral("true")
                value = .bool(true)
            case 0x66:  // f
                try parseLiteral("false")
                value = .bool(false)
            case 0x6E:  // n
                try parseLiteral("null")
                value = .null
            default:
                throw expected("a value")
            }

            // The value is complete: add it to the innermost container, then either go on to the
            // next element or member, or close that container, which completes a value in turn.
            while depth > 0 {
                skipWhitespace()
                if innermost.isObject {
                    let key = innermost.key
                    innermost.members[key] = value
                    switch current {
                    case 0x2C:  // ,
                        try skipComma(closer: 0x7D)
                        let keyStart = position
                        innermost.key = try parseKey(expecting: "a string key", scratch: &scratch)
                        if innermost.members[innermost.key] != nil { throw duplicateKey(innermost.key, at: keyStart) }
                        continue nextValue
                    case 0x7D:  // }
                        value = .object(innermost.members)
                    default:
                        throw expected("',' or '}' after an object member")
                    }
                } else {
                    innermost.elements.append(value)
                    switch current {
                    case 0x2C:  // ,
                        try skipComma(closer: 0x5D)
                        continue nextValue
                    case 0x5D:  // ]
                        value = .array(innermost.elements)
                    default:
                        throw expected("',' or ']' after an array element")
                    }
                }
                position += 1
                depth -= 1
                if depth > 0 { innermost = enclosing.removeLast() }
            }
            skipWhitespace()
            guard position == count else {
                throw JSONParseError(offset: position, message: "unexpected data after the value")
            }
            return value
        }
    }

    /// "duplicate key 'command'", naming at most the first 40 characters of a long key.
    func duplicateKey(_ key: String, at offset: Int) -> JSONParseError {
        let shown = key.count > 40 ? key.prefix(40) + "…" : Substring(key)
        return JSONParseError(offset: offset, message: "duplicate key '\(shown)'")
    }

    /// Steps over the ',' at `position` and the whitespace after it; `closer` next is an error.
    mutating func skipComma(closer: UInt8) throws(JSONParseError) {
        let comma = position
        position += 1
        skipWhitespace()
        if current == closer {
            throw JSONParseError(offset: comma, message: "trailing comma before '\(Unicode.Scalar(closer))'")
        }
    }

    /// A member's key and the ':' after it.
    mutating func parseKey(expecting what: String, scratch: inout [UInt8]) throws(JSONParseError) -> String {
        guard current == 0x22 else { throw expected(what) }  // "
        let key = try parseString(scratch: &scratch)
        skipWhitespace()
        guard current == 0x3A else { throw expected("':' after an object key") }  // :
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
        if current == 0x2D { position += 1 }  // -
        let integerStart = position
        let integerDigits = skipDigits()
        guard integerDigits > 0 else { throw expected("a digit after '-'") }
        if integerDigits > 1 && base[integerStart] == 0x30 {  // 0
            throw JSONParseError(offset: start, message: "leading zeros are not allowed")
        }
        var isInteger = true
        if current == 0x2E {  // .
            isInteger = false
            position += 1
            guard skipDigits() > 0 else { throw expected("a digit after the decimal point") }
        }
        if current == 0x65 || current == 0x45 {  // e E
            isInteger = false
            position += 1
            if current == 0x2B || current == 0x2D { position += 1 }  // + -
            guard skipDigits() > 0 else { throw expected("a digit in the exponent") }
        }

        if isInteger, let integer = int64(digitsFrom: integerStart, negative: integerStart > start) {
            return .int(integer)
        }
        // The text is a valid JSON number, which Double's own parser (correctly rounded) accepts.
        let text = String(decoding: bytes(from: start, length: position - start), as: UTF8.self)
        guard let double = Double(text), double.isFinite else {
            throw JSONParseError(offset: start, message: "number out of range")
        }
        return .double(double)
    }

    /// Steps over the digits at `position`; returns how many there were.
    mutating func skipDigits() -> Int {
        let start = position
        while position < count && base[position] &- 0x30 < 10 { position += 1 }  // 0-9
        return position - start
    }

    /// The digits from `start` up to `position` (without leading zeros) as an Int64, if it has room.
    func int64(digitsFrom start: Int, negative: Bool) -> Int64? {
        guard position - start <= 19 else { return nil }  // 20 digits are beyond Int64 ...
        var magnitude: UInt64 = 0
        for index in start..<position { magnitude = magnitude &* 10 &+ UInt64(base[index] &- 0x30) }  // ... 19 fit UInt64
        let limit = UInt64(bitPattern: Int64.max) + (negative ? 1 : 0)  // -2^63 ... 2^63 - 1
        guard magnitude <= limit else { return nil }
        return Int64(bitPattern: negative ? 0 &- magnitude : magnitude)
    }

    // MARK: Strings

    /// A string starting at the '"' at `position`; leaves `position` after the closing '"'.
    /// `scratch` is where the string is put together if it has escapes.
    mutating func parseString(scratch: inout [UInt8]) throws(JSONParseError) -> String {
        let quote = position
        position += 1
        var runStart = position  // bytes from here up to `position` need no unescaping
        var hasEscapes = false
        scratch.removeAll(keepingCapacity: true)
        while true {
            guard position < count else { throw JSONParseError(offset: quote, message: "unterminated string") }
            let byte = base[position]
            if byte >= 0x20 && byte < 0x80 && byte != 0x22 && byte != 0x5C {  // printable ASCII but " and \
                position += 1
            } else if byte == 0x22 {  // "
                break
            } else if byte == 0x5C {  // \
                scratch.append(contentsOf: bytes(from: runStart, length: position - runStart))
                try parseEscape(quote: quote, into: &scratch)
                runStart = position
                hasEscapes = true
            } else if byte < 0x20 {
                throw JSONParseError(offset: position, message: "unescaped control character in a string")
            } else {
                try skipUTF8Sequence()
            }
        }
        let run = bytes(from: runStart, length: position - runStart)
        position += 1
        // Both are valid UTF-8 by now, so String(decoding:) repairs nothing.
        if !hasEscapes { return String(decoding: run, as: UTF8.self) }
        scratch.append(contentsOf: run)
        return String(decoding: scratch, as: UTF8.self)
    }

    /// The escape sequence at `position` (a '\'), appended to `scratch` as UTF-8.
    mutating func parseEscape(quote: Int, into scratch: inout [UInt8]) throws(JSONParseError) {
        let backslash = position
        guard position + 1 < count else { throw JSONParseError(offset: quote, message: "unterminated string") }
        let letter = base[position + 1]
        position += 2
        switch letter {
        case 0x22, 0x5C, 0x2F: scratch.append(letter)  // " \ /
        case 0x62: scratch.append(0x08)  // b
        case 0x66: scratch.append(0x0C)  // f
        case 0x6E: scratch.append(0x0A)  // n
        case 0x72: scratch.append(0x0D)  // r
        case 0x74: scratch.append(0x09)  // t
        case 0x75:  // u
            let unit = try parseHex4(backslash: backslash)
            let scalar: UInt32
            switch unit {
            case 0xD800...0xDBFF:
                // A high surrogate must be followed at once by a \u escape of a low one.
                let unpaired = JSONParseError(offset: backslash, message: "unpaired surrogate in a \\u escape")
                guard current == 0x5C, position + 1 < count, base[position + 1] == 0x75 else { throw unpaired }  // \u
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
            case 0x30...0x39: digit = current - 0x30  // 0-9
            case 0x61...0x66: digit = current - 0x61 + 10  // a-f
            case 0x41...0x46: digit = current - 0x41 + 10  // A-F
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
        let invalid = JSONParseError(offset: position, message: "invalid UTF-8 in a string")
        // The length, and the range of the second byte (any others must be 80...BF).
        var length = 0
        var (secondLow, secondHigh): (UInt8, UInt8) = (0x80, 0xBF)
        switch base[position] {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondLow = 0xA0  // else overlong
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondHigh = 0x9F  // else a surrogate
        case 0xF0: length = 4; secondLow = 0x90  // else overlong
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondHigh = 0x8F  // else above U+10FFFF
        default: throw invalid  // a continuation byte, C0, C1 or F5 and above
        }
        guard position + length <= count else { throw invalid }
        let second = base[position + 1]
        guard second >= secondLow && second <= secondHigh else { throw invalid }
        for next in position + 2..<position + length where base[next] < 0x80 || base[next] > 0xBF { throw invalid }
        position += length
    }
}
