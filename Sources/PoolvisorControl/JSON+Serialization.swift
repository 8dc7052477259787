import PoolvisorCore

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
        func newline(_ level: Int) { JSON.writeNewline(indentation: indent * level, into: &bytes) }
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

    /// A newline and `indentation` spaces, copied from `spaces` in chunks: appending a repeated
    /// element goes one by one through generic code in debug builds, thousands of instructions.
    private static func writeNewline(indentation: Int, into bytes: inout [UInt8]) {
        bytes.append(0x0A)  // \n
        var remaining = indentation
        while remaining > 0 {
            let chunk = min(remaining, spaces.utf8CodeUnitCount)
            bytes.append(contentsOf: UnsafeBufferPointer(start: spaces.utf8Start, count: chunk))
            remaining -= chunk
        }
    }

    private static let spaces: StaticString = "                                "  // 32

    /// Everything but non-empty containers, identically for compact and pretty output.
    private func writeScalar(into bytes: inout [UInt8]) {
        switch self {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let value): bytes.append(contentsOf: (value ? "true" : "false").utf8)
        case .int(let value): JSONWriter.appendInteger(value, to: &bytes)
        case .double(let value): JSONWriter.appendDouble(value, to: &bytes)
        case .string(let value): JSON.writeString(value, into: &bytes)
        case .array: bytes.append(contentsOf: "[]".utf8)
        case .object: bytes.append(contentsOf: "{}".utf8)
        }
    }

    private static func writeString(_ string: String, into bytes: inout [UInt8]) {
        JSONWriter.appendQuoted(string, to: &bytes)
    }
}
