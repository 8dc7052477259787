/// A value of a pools file that may differ per replica (issue 15): `-n w{replica}@%h`,
/// `DBOS__VMID={pool}-{replica}`, `port = "{replica + 8000}"`. Parsed once when the file is read, so an
/// unknown name is an error with file, line and key; expanded for each replica at its launch.
///
/// The rules: `{pool}`, `{replica}`, `{instance}`, `{hostname}`, and `{replica + N}` / `{replica - N}`
/// (an integer offset, for ports); `{{` and `}}` are literal braces; `${` is the shell's and left as it is
/// (`sh -c "echo ${HOME}"`), up to its closing brace. A text without a brace is returned as it was.
public struct ReplicaTemplate: Sendable, Equatable, CustomStringConvertible {
    public enum Part: Sendable, Equatable {
        case text(String)
        case pool
        case instance
        case hostname
        /// The replica's index plus `offset`.
        case replica(offset: Int)
    }

    public let parts: [Part]

    /// The names a template may use, for messages.
    public static let names = ["pool", "replica", "instance", "hostname"]
    /// The largest offset `{replica + N}` takes (a port is at most 65535).
    public static let maximumOffset = 1_000_000

    /// Why a text is not a valid template; `offset` is the index of the character at fault.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var offset: Int
        public var description: String { message }
    }

    /// Whether the template depends on the replica: it has to be expanded per worker.
    public var variesByReplica: Bool { parts.contains { if case .replica = $0 { true } else { false } } }

    public var description: String {
        parts.map { part in
            switch part {
            case .text(let t): t.replacingBraces()
            case .pool: "{pool}"
            case .instance: "{instance}"
            case .hostname: "{hostname}"
            case .replica(let n): n == 0 ? "{replica}" : n > 0 ? "{replica + \(n)}" : "{replica - \(-n)}"
            }
        }.joined()
    }

    /// The text with the placeholders replaced.
    public func expand(pool: String, instance: String, hostname: String, replica: Int) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .text(let t): out += t
            case .pool: out += pool
            case .instance: out += instance
            case .hostname: out += hostname
            case .replica(let n): out += String(replica.addingReportingOverflow(n).partialValue)
            }
        }
        return out
    }

    /// Parses `text`. A text without `{` or `}` is one `.text` part.
    public static func parse(_ text: String) -> Result<ReplicaTemplate, Failure> {
        guard text.contains(where: { $0 == "{" || $0 == "}" }) else { return .success(ReplicaTemplate(parts: [.text(text)])) }
        let chars = Array(text)
        var parts: [Part] = []
        var literal = ""
        var i = 0
        func flush() {
            if !literal.isEmpty { parts.append(.text(literal)) }
            literal = ""
        }
        while i < chars.count {
            let c = chars[i]
            if c == "}" {
                literal.append("}")
                i += chars.indices.contains(i + 1) && chars[i + 1] == "}" ? 2 : 1
                continue
            }
            guard c == "{" else {
                literal.append(c)
                i += 1
                continue
            }
            if chars.indices.contains(i + 1) && chars[i + 1] == "{" {
                literal.append("{")
                i += 2
                continue
            }
            guard let close = chars[(i + 1)...].firstIndex(of: "}") else {
                return .failure(Failure(message: "'{' at character \(i + 1) is not closed (write '{{' for a literal brace)", offset: i))
            }
            if i > 0 && chars[i - 1] == "$" {
                literal += String(chars[i...close])  // the shell's ${VAR}
                i = close + 1
                continue
            }
            switch placeholder(String(chars[(i + 1)..<close])) {
            case .success(let part):
                flush()
                parts.append(part)
            case .failure(let refusal):
                return .failure(Failure(message: refusal.message, offset: i))
            }
            i = close + 1
        }
        flush()
        return .success(ReplicaTemplate(parts: parts))
    }

    private struct Refusal: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    private static func placeholder(_ inside: String) -> Result<Part, Refusal> {
        let words = inside.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let name = words.first ?? ""
        switch (name, words.count) {
        case ("pool", 1): return .success(.pool)
        case ("instance", 1): return .success(.instance)
        case ("hostname", 1): return .success(.hostname)
        case ("replica", 1): return .success(.replica(offset: 0))
        case ("replica", 3) where words[1] == "+" || words[1] == "-":
            guard let n = Int(words[2]), (0...maximumOffset).contains(n) else {
                return .failure(Refusal("'{\(inside)}': the offset must be a whole number from 0 to \(maximumOffset)"))
            }
            return .success(.replica(offset: words[1] == "+" ? n : -n))
        case ("pool", _), ("instance", _), ("hostname", _), ("replica", _):
            return .failure(Refusal("'{\(Printable.escaped(inside, limit: 40))}': only {replica} takes an offset, written {replica + N}"))
        default:
            let shown = Printable.escaped(inside, limit: 40)
            return .failure(
                Refusal(
                    "unknown name '{\(shown)}'\(Suggestion.didYouMean(name, names)); known: {pool}, {replica}, {replica + N}, {instance}, {hostname} ('{{' for a literal brace)"))
        }
    }
}

extension String {
    /// A literal text as a template writes it: braces doubled.
    fileprivate func replacingBraces() -> String {
        var out = ""
        for c in self {
            if c == "{" || c == "}" { out.append(c) }
            out.append(c)
        }
        return out
    }
}
