/// A look at a values file's text before Yams composes it, for the two things that must be refused before
/// composing: anchors (`&name`), which aliases (`*name`) repeat, so that a few hundred bytes can stand for
/// billions of nodes (Yams hashes every mapping key when it composes, so an alias used as a key is expanded
/// there already); and nesting deep enough to strain the composer's recursion (libyaml stops at 1000 levels,
/// Yams recurses once per level).
///
/// A lexical scan, not a parser: it follows quoted scalars, comments, flow collections and block scalars
/// well enough that `&` and `*` inside strings, comments and `|` text are not taken for anchors, and it errs
/// on the side of refusing (`&x` at the start of a plain multi-line scalar's next line is refused too).
enum YAMLPrecheck {
    enum Finding: Equatable {
        /// An anchor or alias, as written (`&defaults`, `*defaults`), on this 1-based line.
        case anchor(line: Int, token: String)
        /// Nesting estimated above `limit` on this line.
        case tooDeep(line: Int)
    }

    /// The first anchor, alias or too-deep line in `text`; nil when Yams may compose it. The nesting
    /// estimate is an upper bound (every level of indentation and every `- `, `? `, `key: ` and `[`/`{`
    /// on a line counts), refused above `depthLimit`; the exact depth is checked on the composed nodes.
    static func scan(_ text: String, depthLimit: Int) -> Finding? {
        var quote: Character? = nil
        var blockParent: Int? = nil
        var flowDepth = 0
        var indents: [Int] = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let chars = Array(rawLine.unicodeScalars.filter { $0 != "\r" })
            let indent = chars.prefix { $0 == " " }.count
            let blank = chars.allSatisfy { $0 == " " || $0 == "\t" }
            if let parent = blockParent {
                if blank || indent > parent { continue }
                blockParent = nil
            }
            if blank { continue }
            var i = 0
            var atNodeStart = quote == nil
            var parentColumn = indent
            var levels = 0
            if quote == nil {
                if chars.first == "%" { continue }  // a directive
                let start = String(String.UnicodeScalarView(chars.prefix(3)))
                if (start == "---" || start == "...") && (chars.count == 3 || chars[3] == " " || chars[3] == "\t") {
                    i = 3
                    parentColumn = -1
                    indents = []
                } else if chars[indent] != "#" && flowDepth == 0 {
                    while let top = indents.last, top > indent { indents.removeLast() }
                    if indents.last != indent { indents.append(indent) }
                }
            }
            while i < chars.count {
                let c = chars[i]
                if let q = quote {
                    if q == "\"" && c == "\\" {
                        i += 2
                        continue
                    }
                    if q == "'" && c == "'" && i + 1 < chars.count && chars[i + 1] == "'" {
                        i += 2
                        continue
                    }
                    if Character(c) == q { quote = nil }
                    i += 1
                    continue
                }
                let afterSpace = i == 0 || chars[i - 1] == " " || chars[i - 1] == "\t"
                let next: Unicode.Scalar? = i + 1 < chars.count ? chars[i + 1] : nil
                let spaceAfter = next == nil || next == " " || next == "\t"
                switch c {
                case " ", "\t":
                    break
                case "#" where afterSpace:
                    i = chars.count
                    continue
                case "&" where atNodeStart, "*" where atNodeStart:
                    let token = chars[i...].prefix { $0 != " " && $0 != "\t" && $0 != "," && $0 != "]" && $0 != "}" }
                    return .anchor(line: lineNumber, token: String(String.UnicodeScalarView(token.prefix(64))))
                case "\"" where atNodeStart, "'" where atNodeStart:
                    quote = Character(c)
                    parentColumn = i
                    atNodeStart = false
                case "-" where atNodeStart && spaceAfter, "?" where atNodeStart && spaceAfter:
                    parentColumn = i
                    levels += 1
                case ":" where spaceAfter || (flowDepth > 0 && (next == "," || next == "]" || next == "}")):
                    atNodeStart = true
                    levels += 1
                case "[" where atNodeStart, "{" where atNodeStart:
                    flowDepth += 1
                    levels += 1
                case "]" where flowDepth > 0, "}" where flowDepth > 0:
                    flowDepth -= 1
                    atNodeStart = false
                case "," where flowDepth > 0:
                    atNodeStart = true
                case "|" where atNodeStart && flowDepth == 0, ">" where atNodeStart && flowDepth == 0:
                    blockParent = parentColumn
                    i = chars.count
                    continue
                case "!" where atNodeStart:
                    while i + 1 < chars.count && chars[i + 1] != " " && chars[i + 1] != "\t" { i += 1 }
                default:
                    if atNodeStart { parentColumn = i }
                    atNodeStart = false
                }
                i += 1
            }
            if indents.count + levels + flowDepth > depthLimit { return .tooDeep(line: lineNumber) }
        }
        return nil
    }
}
