/// TOML text written a line at a time: tables, keys and values escaped as TOML wants them, and comments
/// that can never end early (a newline in a comment's text starts another `#` line).
struct TOMLWriter {
    private(set) var text = ""

    /// A `[table]` header, after a blank line unless it is the first thing written.
    mutating func table(_ path: [String]) {
        if !text.isEmpty && !text.hasSuffix("\n\n") { text += "\n" }
        text += "[\(path.map(Self.key).joined(separator: "."))]\n"
    }

    /// `key = value`, with `value` already TOML text (see `string`, `array`, `number`).
    mutating func line(_ key: String, _ value: String) {
        text += "\(Self.key(key)) = \(value)\n"
    }

    /// `# text`, one `#` line per line of `text`; control characters are shown escaped.
    mutating func comment(_ text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            self.text += line.isEmpty ? "#\n" : "# \(Self.escapedControls(String(line)))\n"
        }
    }

    /// Text written by another writer (a pool's tables), as is.
    mutating func append(_ other: String) { text += other }

    mutating func blankLine() {
        if !text.isEmpty && !text.hasSuffix("\n\n") { text += "\n" }
    }

    /// A bare key when TOML allows one (`A-Za-z0-9_-`), else a quoted one.
    static func key(_ key: String) -> String {
        let bare = !key.isEmpty && key.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "_" || $0 == "-" }
        return bare ? key : string(key)
    }

    /// A basic string, `"…"`, with `\` `"` and every control character escaped.
    static func string(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || Self.isInvisible(scalar) {
                    out += scalar.value > 0xFFFF ? "\\U" + Self.hex(scalar.value, digits: 8) : "\\u" + Self.hex(scalar.value, digits: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func array(_ values: [String]) -> String {
        "[" + values.map(string).joined(separator: ", ") + "]"
    }

    /// An integer as TOML writes it.
    static func number(_ value: Int) -> String { String(value) }

    /// A float as TOML writes it: whole numbers without a fraction (`15`, not `15.0`), others as Swift
    /// prints them (`0.5`). Only finite numbers reach here (the import checks every range first).
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        return "\(value)"
    }

    /// An inline table `{ a = 1, b = "x" }` from keys and TOML values.
    static func inlineTable(_ pairs: [(String, String)]) -> String {
        "{ " + pairs.map { "\(key($0.0)) = \($0.1)" }.joined(separator: ", ") + " }"
    }

    /// Text for a comment: control characters and direction marks escaped, so that the comment shows what
    /// the values file says and cannot change how the lines around it read.
    static func escapedControls(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || isInvisible(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Direction marks and other format characters (U+202E and its kin), and line/paragraph separators.
    private static func isInvisible(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.generalCategory == .format || scalar.value == 0x2028 || scalar.value == 0x2029 || (0x80...0x9F).contains(scalar.value)
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let s = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, digits - s.count)) + s
    }
}
