/// Where something is in a file: 1-based line and column (0 when unknown).
public struct SourceLocation: Hashable, Sendable, Codable {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int = 0, column: Int = 0) {
        self.file = file
        self.line = line
        self.column = column
    }
}

/// One finding about a pools file or an env file, in the shape compilers use:
/// `pools.toml:12:1: error: unknown key 'replcias' in [pools.default]; did you mean 'replicas'?`
/// A diagnostic never contains a value from an env file or from `[env]`: keys only. Keys and names are
/// the file's own text, so a control character or a direction mark in them (a key `"a\u202Eb"`) is
/// shown escaped, never printed as is.
public struct Diagnostic: Hashable, Sendable, CustomStringConvertible, Codable {
    public enum Severity: String, Sendable, Codable { case error, warning }

    public var severity: Severity
    public var location: SourceLocation
    /// The dotted key path the finding is about ("pools.default.replicas"), empty for the file itself.
    public var key: String
    public var message: String

    public init(_ severity: Severity, _ location: SourceLocation, key: String, _ message: String) {
        self.severity = severity
        self.location = location
        self.key = Printable.visible(key)
        self.message = Printable.visible(message)
    }

    public var description: String {
        var position = location.file
        if location.line > 0 {
            position += ":\(location.line)"
            if location.column > 0 { position += ":\(location.column)" }
        }
        return "\(position): \(severity.rawValue): \(message)"
    }
}

extension Array where Element == Diagnostic {
    public var errors: [Diagnostic] { filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { filter { $0.severity == .warning } }
    public var hasErrors: Bool { contains { $0.severity == .error } }
}
