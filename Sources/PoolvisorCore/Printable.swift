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
