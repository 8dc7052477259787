import PoolvisorCore

/// Parses dotenv files: `KEY=value` lines, `#` comments, blank lines, an optional `export ` prefix,
/// single-quoted (literal) and double-quoted (with \n \t \" \\ \$ escapes, may span lines) values, and
/// unquoted values with a trailing ` # comment`. Errors name the file, the line and the key, never a value.
public enum EnvFile {
    public static func parse(_ text: String, file: String) -> (environment: Environment, diagnostics: [Diagnostic]) {
        var env = Environment()
        var diagnostics: [Diagnostic] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) }
        var n = 0
        func fail(_ line: Int, _ key: String, _ message: String) {
            diagnostics.append(Diagnostic(.error, SourceLocation(file: file, line: line), key: key, message))
        }
        while n < lines.count {
            let lineNumber = n + 1
            var line = trimmed(lines[n])
            n += 1
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") || line.hasPrefix("export\t") { line = trimmed(String(line.dropFirst(7))) }
            guard let eq = line.firstIndex(of: "=") else {
                fail(lineNumber, "", "line \(lineNumber) is not KEY=value")
                continue
            }
            let key = trimmed(String(line[..<eq]))
            guard EnvironmentName.isValid(key) else {
                fail(lineNumber, "", "line \(lineNumber): '\(key.count > 40 ? String(key.prefix(40)) + "…" : key)' is not a valid variable name")
                continue
            }
            var rest = Substring(trimmed(String(line[line.index(after: eq)...])))
            var value = ""
            if rest.first == "'" {
                rest = rest.dropFirst()
                guard let close = rest.firstIndex(of: "'") else {
                    fail(lineNumber, key, "line \(lineNumber): the value of \(key) has no closing single quote")
                    continue
                }
                value = String(rest[..<close])
            } else if rest.first == "\"" {
                // Double quotes may continue over several lines.
                var body = String(rest.dropFirst())
                var closed = false
                var out = ""
                while true {
                    var it = body.makeIterator()
                    while let c = it.next() {
                        if c == "\\" {
                            switch it.next() {
                            case "n": out.append("\n")
                            case "t": out.append("\t")
                            case "r": out.append("\r")
                            case "\"": out.append("\"")
                            case "\\": out.append("\\")
                            case "$": out.append("$")
                            case let other?: out.append("\\"); out.append(other)
                            case nil: out.append("\\")
                            }
                        } else if c == "\"" {
                            closed = true
                            break
                        } else {
                            out.append(c)
                        }
                    }
                    if closed || n >= lines.count { break }
                    out.append("\n")
                    body = lines[n]
                    n += 1
                }
                guard closed else {
                    fail(lineNumber, key, "line \(lineNumber): the value of \(key) has no closing double quote")
                    continue
                }
                value = out
            } else {
                // An unquoted value ends at a '#' that follows whitespace.
                var previous: Character = "x"
                if let hash = rest.indices.first(where: { i in
                    defer { previous = rest[i] }
                    return rest[i] == "#" && (previous == " " || previous == "\t")
                }) {
                    rest = rest[..<hash]
                }
                value = trimmed(String(rest))
            }
            env[key] = value
        }
        return (env, diagnostics)
    }
}
