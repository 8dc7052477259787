import PoolvisorCore

/// Finds the line and column of a key path in TOML source text.
///
/// TOMLKit reports positions only for syntax errors, so after a successful parse this scanner walks the
/// text once and records where each `[table]` header, `key =` line and inline-table key starts. It does
/// not produce values (TOMLKit does that); it only understands enough of TOML — comments, all four string
/// forms, arrays and inline tables spanning lines — not to be fooled by them.
///
/// It also measures how deep the document nests (table header and dotted key parts, arrays and inline
/// tables), without recursing deeper than `maximumDepth`: a file nested deeper is refused before any
/// recursive parser (toml++'s, or this one's) can run out of stack on it.
public struct SourceLocator: Sendable {
    /// The deepest nesting a pools file may have. The deepest real key,
    /// `[pools.X.autoscaling.behavior.scale_up]`'s `policies = [{ type = … }]`, is 8 deep.
    public static let maximumDepth = 32

    private var positions: [String: (line: Int, column: Int)] = [:]
    /// Where the document first nests deeper than `maximumDepth`; the rest of it was not scanned.
    public private(set) var tooDeep: (line: Int, column: Int)?

    public init(text: String) {
        var scanner = Scanner(Array(text.unicodeScalars), recording: true)
        // A header or dotted key also places each table it names on the way (`[a.b.c]` is where `a`
        // first appears if nothing named it before).
        scanner.scanDocument { path, line, column in
            for end in 1...max(path.count, 1) {
                let id = SourceLocator.id(Array(path.prefix(end)))
                if positions[id] == nil { positions[id] = (line, column) }
            }
        }
        tooDeep = scanner.tooDeep
    }

    /// Where `text` first nests deeper than `maximumDepth`, or nil: the same scan, without recording
    /// any position (what a reload needs when the file has nothing to report).
    public static func tooDeep(in text: String) -> (line: Int, column: Int)? {
        var scanner = Scanner(Array(text.unicodeScalars), recording: false)
        scanner.scanDocument { _, _, _ in }
        return scanner.tooDeep
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

    /// The first position (by line) of a key path `matching` says is the one: for a key the parser
    /// could hand over only in part.
    public func locate(matching: ([String]) -> Bool) -> (line: Int, column: Int)? {
        positions.filter { matching($0.key.split(separator: "\u{1}", omittingEmptySubsequences: false).map(String.init)) }
            .values.min { ($0.line, $0.column) < ($1.line, $1.column) }
    }

    private static func id(_ path: [String]) -> String { path.joined(separator: "\u{1}") }

    private struct Scanner {
        let s: [Unicode.Scalar]
        /// Whether keys are read as text and paths handed to the record closure; without, only the
        /// depth is measured (keys come back as empty strings, one per part).
        let recording: Bool
        var i = 0
        var line = 1
        var lineStart = 0
        var tooDeep: (line: Int, column: Int)?

        init(_ s: [Unicode.Scalar], recording: Bool) {
            self.s = s
            self.recording = recording
        }

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
                if c == " " || c == "\t" || c == "\r" || c == "\n" { advance() } else if c == "#" { skipComment() } else { return }
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

        /// Stops the scan when `depth` is over the limit, remembering where (`at`, or here).
        mutating func deeper(_ depth: Int, at position: (line: Int, column: Int)? = nil) -> Bool {
            guard depth > SourceLocator.maximumDepth else { return false }
            tooDeep = position ?? (line, column)
            i = s.count
            return true
        }

        /// Reads one string of any of the four TOML forms, returning its content (escapes decoded, so
        /// that a quoted key `"a\nb"` is found as the name the parser gives it).
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
                    if quote == "\"" && s[i] == "\\" {
                        readEscape(into: &out)
                        continue
                    }
                    if recording { out.append(s[i]) }
                    advance()
                }
            } else {
                advance()
                while let c = current, c != quote, c != "\n" {
                    if quote == "\"" && c == "\\" {
                        readEscape(into: &out)
                        continue
                    }
                    if recording { out.append(s[i]) }
                    advance()
                }
                if current == quote { advance() }
            }
            return String(out)
        }

        /// At a backslash in a basic string: appends what the escape stands for (a line-ending backslash
        /// of a multi-line string stands for nothing; an unknown escape, for its character).
        mutating func readEscape(into out: inout String.UnicodeScalarView) {
            advance()
            guard let c = current else { return }
            advance()
            switch c {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "b": out.append("\u{8}")
            case "f": out.append("\u{C}")
            case "e": out.append("\u{1B}")
            case "u", "U":
                var value: UInt32 = 0
                for _ in 0..<(c == "u" ? 4 : 8) {
                    guard let h = current, let digit = Self.hexDigit(h) else { break }
                    value = value &* 16 &+ digit
                    advance()
                }
                out.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            case "\n", " ", "\t", "\r":
                break
            default: out.append(c)
            }
        }

        private static func hexDigit(_ c: Unicode.Scalar) -> UInt32? {
            switch c {
            case "0"..."9": c.value - 48
            case "a"..."f": c.value - 97 + 10
            case "A"..."F": c.value - 65 + 10
            default: nil
            }
        }

        /// Reads a dotted key (`a."b.c".d`) up to a terminator (`first`, or `also` or `orElse`), returning
        /// its parts. Compared one by one: a Set was hashed for every character of every key.
        mutating func readKey(until first: Unicode.Scalar, also: Unicode.Scalar = "\n", orElse: Unicode.Scalar = "\n") -> [String] {
            func ends(_ c: Unicode.Scalar) -> Bool { c == first || c == also || c == orElse || c == "\n" }
            var parts: [String] = []
            while true {
                skipSpaces()
                guard let c = current, !ends(c) else { break }
                if c == "\"" || c == "'" {
                    parts.append(readString())
                } else {
                    let start = i
                    while let b = current, b != ".", b != " ", b != "\t", !ends(b) { advance() }
                    var bare = String.UnicodeScalarView()
                    if recording { bare.append(contentsOf: s[start..<i]) }
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
                    table = readKey(until: "]")
                    if deeper(table.count, at: (l, col)) { return }
                    if recording { record(table, l, col) }
                    skipLine()
                } else {
                    let key = readKey(until: "=")
                    guard current == "=" else { skipLine(); continue }
                    advance()
                    if deeper(table.count + key.count, at: (l, col)) { return }
                    let path = recording ? table + key : []
                    if recording { record(path, l, col) }
                    skipSpaces()
                    scanValue(path: path, depth: table.count + key.count, record)
                    skipLine()
                }
            }
        }

        /// Skips one value `depth` deep, recording the keys of inline tables inside it.
        mutating func scanValue(path: [String], depth: Int, _ record: ([String], Int, Int) -> Void) {
            guard let c = current else { return }
            switch c {
            case "\"", "'":
                _ = readString()
            case "[":
                if deeper(depth + 1) { return }
                advance()
                while true {
                    skipSpacesCommentsAndNewlines()
                    guard let d = current else { return }
                    if d == "]" { advance(); return }
                    if d == "," { advance(); continue }
                    let before = i
                    scanValue(path: path, depth: depth + 1, record)
                    if i == before { advance() }
                }
            case "{":
                if deeper(depth + 1) { return }
                advance()
                while true {
                    skipSpaces()
                    guard let d = current, d != "\n" else { return }
                    if d == "}" { advance(); return }
                    if d == "," { advance(); continue }
                    let (l, col) = (line, column)
                    let key = readKey(until: "=", also: "}", orElse: ",")
                    guard current == "=" else { continue }
                    advance()
                    if deeper(depth + 1 + key.count, at: (l, col)) { return }
                    let inner = recording ? path + key : []
                    if recording { record(inner, l, col) }
                    skipSpaces()
                    scanValue(path: inner, depth: depth + 1 + key.count, record)
                }
            default:
                while let d = current, d != ",", d != "]", d != "}", d != "\n", d != "#" { advance() }
            }
        }
    }
}
