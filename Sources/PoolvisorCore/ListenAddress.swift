/// A TCP address to listen on: an IP address (never a name) and a port, written `127.0.0.1:9325` or
/// `[::1]:9325`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible, Codable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Reads `host:port`; the error says what is wrong.
    public static func parse(_ text: String) -> Result<ListenAddress, ParseError> {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(ParseError("the IPv6 address has no closing ]")) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return .failure(ParseError("expected :PORT after the IPv6 address")) }
            port = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return .failure(ParseError("expected ADDRESS:PORT, such as 127.0.0.1:9325")) }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            if host.contains(":") { return .failure(ParseError("an IPv6 address goes in brackets: [::1]:9325")) }
        }
        guard !host.isEmpty, IPAddress.isLiteral(String(host)) else {
            return .failure(ParseError("'\(host)' is not an IP address (a name would need the resolver; use 0.0.0.0 or [::] for every address)"))
        }
        guard let n = Int(port), (1...65535).contains(n) else { return .failure(ParseError("the port must be 1-65535, not '\(port)'")) }
        return .success(ListenAddress(host: String(host), port: n))
    }

    public struct ParseError: Error, Sendable, Equatable {
        public var message: String
        public init(_ message: String) { self.message = message }
    }

    /// Only this host can connect.
    public var isLoopback: Bool { host == "::1" || host.hasPrefix("127.") }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
