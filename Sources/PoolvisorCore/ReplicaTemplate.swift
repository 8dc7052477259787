/// A value of a pools file that may differ per replica (issue 15): `-n w{replica}@%h`,
/// `DBOS__VMID={pool}-{replica}`, `port = "{replica + 8000}"`. Parsed once when the file is read, so an
/// unknown name is an error with file, line and key; expanded for each replica at its launch.
///
/// The rules: `{pool}`, `{replica}`, `{instance}`, `{hostname}`, and `{replica + N}` / `{replica - N}`
/// (an integer offset, for ports); `{{` and `}}` are literal braces; `${` is the shell's and left as it is
/// (`sh -c "echo ${HOME}"`), up to its closing brace. A text without a brace is returned as it was.
public struct ReplicaTemplate: Sendable, Equatable, CustomStringConvertible, Codable {
    public enum Part: Sendable, Equatable, Codable {
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
        /// The braces look meant for poolvisor (a misspelt name, an offset on the wrong name), not for
        /// the worker's own language.
        public var meantForPoolvisor = false
        public var description: String { message }
    }

    /// What a value of the pools file is, read as a template.
    public enum Reading: Sendable, Equatable {
        case template(ReplicaTemplate)
        /// Braces that are not poolvisor's (a Python f-string, a JSON literal) in a value that uses none of
        /// poolvisor's placeholders: passed to the worker as written, with a warning saying so.
        case foreign(ReplicaTemplate, why: String)
        case failure(Failure)
    }

    /// `parse`, forgiving the braces of the worker's own language where they cannot be meant for
    /// poolvisor: a value that uses no placeholder of poolvisor's and whose braces name nothing close to
    /// one (`print(f"{started} done")`) is taken as written, so a pools file that worked before
    /// templates keeps working. A misspelt name (`{replcia}`), or unknown braces beside poolvisor's own,
    /// are errors.
    public static func read(_ text: String) -> Reading {
        switch parse(text) {
        case .success(let template):
            return .template(template)
        case .failure(let failure):
            let ours = ["{pool}", "{instance}", "{hostname}", "{replica"].contains { text.contains($0) }
            if failure.meantForPoolvisor || ours { return .failure(failure) }
            return .foreign(ReplicaTemplate(parts: [.text(text)]), why: failure.message)
        }
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

    /// The same template with `{pool}`, `{instance}` and `{hostname}` written in: what is left is
    /// `{replica}`, for each worker's launch.
    public func resolving(pool: String, instance: String, hostname: String) -> ReplicaTemplate {
        var out: [Part] = []
        for part in parts {
            let text: String? =
                switch part {
                case .text(let t): t
                case .pool: pool
                case .instance: instance
                case .hostname: hostname
                case .replica: nil
                }
            if let text {
                if case .text(let previous)? = out.last {
                    out[out.count - 1] = .text(previous + text)
                } else {
                    out.append(.text(text))
                }
            } else {
                out.append(part)
            }
        }
        return ReplicaTemplate(parts: out)
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
                return .failure(Failure(message: refusal.message, offset: i, meantForPoolvisor: refusal.meantForPoolvisor))
            }
            i = close + 1
        }
        flush()
        return .success(ReplicaTemplate(parts: parts))
    }

    private struct Refusal: Error {
        var message: String
        var meantForPoolvisor = true
        init(_ message: String, meantForPoolvisor: Bool = true) {
            self.message = message
            self.meantForPoolvisor = meantForPoolvisor
        }
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
            let suggestion = Suggestion.didYouMean(name, names)
            return .failure(
                Refusal(
                    "unknown name '{\(shown)}'\(suggestion); known: {pool}, {replica}, {replica + N}, {instance}, {hostname} ('{{' for a literal brace)",
                    meantForPoolvisor: !suggestion.isEmpty))
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
