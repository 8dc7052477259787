/// Finds the line and column of a key path in TOML source text.
///
/// TOMLKit reports positions only for syntax errors, so after a successful parse this scanner walks the
/// text once and records where each `[table]` header, `key =` line and inline-table key starts. It does
/// not produce values (TOMLKit does that); it only understands enough of TOML — comments, all four string
/// forms, arrays and inline tables spanning lines — not to be fooled by them.
public struct SourceLocator: Sendable {
    private var positions: [String: (line: Int, column: Int)] = [:]

    public init(text: String) {
        var scanner = Scanner(Array(text.unicodeScalars))
        scanner.scanDocument { path, line, column in
            let id = SourceLocator.id(path)
            if positions[id] == nil { positions[id] = (line, column) }
        }
    }

    /// The position of `path`, or of its nearest ancestor that has one (a missing key points at its table).
    public func locate(_ path: [String]) -> (line: Int, column: Int)? {
        var p = path[...]
        while !p.isEmpty {
            if let found = positions[SourceLocator.id(Array(p))] { return found }
            p = p.dropLast()
        }
        return nil
    }

    private static func id(_ path: [String]) -> String { path.joined(separator: "\u{1}") }

    private struct Scanner {
        let s: [Unicode.Scalar]
        var i = 0
        var line = 1
        var lineStart = 0

        init(_ s: [Unicode.Scalar]) { self.s = s }

        var column: Int { i - lineStart + 1 }
        var atEnd: Bool { i >= s.count }
        var current: Unicode.Scalar? { i < s.count ? s[i] : nil }

        mutating func advance() {
            if s[i] == "\n" {
                line += 1
                lineStart = i + 1
            }
            i += 1
        }

        mutating func skipSpaces() { while let c = current, c == " " || c == "\t" { advance() } }

        mutating func skipSpacesCommentsAndNewlines() {
            while let c = current {
                if c == " " || c == "\t" || c == "\r" || c == "\n" { advance() }
                else if c == "#" { skipComment() }
                else { return }
            }
        }

        mutating func skipComment() { while let c = current, c != "\n" { advance() } }

        mutating func skipLine() { while let c = current, c != "\n" { advance() } }

        func lookingAt(_ text: String) -> Bool {
            var j = i
            for u in text.unicodeScalars {
                guard j < s.count, s[j] == u else { return false }
                j += 1
            }
            return true
        }

        /// Reads one string of any of the four TOML forms, returning its (approximate) content.
        mutating func readString() -> String {
            let quote = s[i]
            let multi = lookingAt(quote == "\"" ? "\"\"\"" : "'''")
            var out = String.UnicodeScalarView()
            if multi {
                advance(); advance(); advance()
                while !atEnd {
                    if s[i] == quote && lookingAt(quote == "\"" ? "\"\"\"" : "'''") {
                        advance(); advance(); advance()
                        while current == quote { advance() }  // up to two extra quotes belong to the content
                        break
                    }
                    if quote == "\"" && s[i] == "\\" { advance() }
                    if !atEnd { out.append(s[i]); advance() }
                }
            } else {
                advance()
                while let c = current, c != quote, c != "\n" {
                    if quote == "\"" && c == "\\" {
                        advance()
                        if atEnd { break }
                    }
                    out.append(s[i])
                    advance()
                }
                if current == quote { advance() }
            }
            return String(out)
        }

        /// Reads a dotted key (`a."b.c".d`) up to a terminator, returning its parts.
        mutating func readKey(until terminators: Set<Unicode.Scalar>) -> [String] {
            var parts: [String] = []
            while true {
                skipSpaces()
                guard let c = current, !terminators.contains(c), c != "\n" else { break }
                if c == "\"" || c == "'" {
                    parts.append(readString())
                } else {
                    var bare = String.UnicodeScalarView()
                    while let b = current, b != ".", b != " ", b != "\t", !terminators.contains(b), b != "\n" {
                        bare.append(b)
                        advance()
                    }
                    parts.append(String(bare))
                }
                skipSpaces()
                guard current == "." else { break }
                advance()
            }
            return parts
        }

        mutating func scanDocument(_ record: ([String], Int, Int) -> Void) {
            var table: [String] = []
            while true {
                skipSpacesCommentsAndNewlines()
                guard let c = current else { return }
                let (l, col) = (line, column)
                if c == "[" {
                    let isArray = lookingAt("[[")
                    advance()
                    if isArray { advance() }
                    table = readKey(until: ["]"])
                    record(table, l, col)
                    skipLine()
                } else {
                    let key = readKey(until: ["="])
                    guard current == "=" else { skipLine(); continue }
                    advance()
                    record(table + key, l, col)
                    skipSpaces()
                    scanValue(path: table + key, record)
                    skipLine()
                }
            }
        }

        /// Skips one value, recording the keys of inline tables inside it.
        mutating func scanValue(path: [String], _ record: ([String], Int, Int) -> Void) {
            guard let c = current else { return }
            switch c {
            case "\"", "'":
                _ = readString()
            case "[":
                advance()
                while true {
                    skipSpacesCommentsAndNewlines()
                    guard let d = current else { return }
                    if d == "]" { advance(); return }
                    if d == "," { advance(); continue }
                    let before = i
                    scanValue(path: path, record)
                    if i == before { advance() }
                }
            case "{":
                advance()
                while true {
                    skipSpaces()
                    guard let d = current, d != "\n" else { return }
                    if d == "}" { advance(); return }
                    if d == "," { advance(); continue }
                    let (l, col) = (line, column)
                    let key = readKey(until: ["=", "}", ","])
                    guard current == "=" else { continue }
                    advance()
                    record(path + key, l, col)
                    skipSpaces()
                    scanValue(path: path + key, record)
                }
            default:
                while let d = current, d != ",", d != "]", d != "}", d != "\n", d != "#" { advance() }
            }
        }
    }
}
