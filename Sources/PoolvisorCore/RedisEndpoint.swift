/// Where a Redis scaler connects, parsed from a URL:
///
/// - `redis://[[user]:password@]host[:port][/db]` (port 6379 by default; `[::1]` for IPv6). A user
///   info without a colon is the password, as redis-cli reads it.
/// - `unix://[[user]:password@]/path/to/redis.sock[?db=N]`, also spelled `redis+unix://`; the query
///   may carry `password=` and `username=` instead of the user info.
///
/// The user, the password and the socket path are percent-decoded. `rediss://` (TLS) is refused.
/// Parse errors say which part is wrong and never repeat the URL or any part of it.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public enum Address: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public static let defaultPort = 6379

    public var address: Address
    public var username: String?
    public var password: String?
    /// The database to SELECT after connecting; nil leaves the server's default (0).
    public var database: Int?

    /// Texts from the URL the endpoint was parsed from that must never appear in a message: the URL
    /// itself and the password as it was written there (percent-encoded).
    private var sourceSecrets: [String] = []

    public init(address: Address, username: String? = nil, password: String? = nil, database: Int? = nil) {
        self.address = address
        self.username = username
        self.password = password
        self.database = database
    }

    /// What the clients redact from every message: the password (decoded and as written) and the URL.
    public var secrets: [String] {
        var all = sourceSecrets
        if let password { all.append(password) }
        return all
    }

    /// The endpoint without credentials, for messages: `redis://127.0.0.1:6379/2`, `unix:///run/redis.sock?db=2`.
    public var description: String {
        switch address {
        case .tcp(let host, let port):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return "redis://\(shownHost):\(port)" + (database.map { "/\($0)" } ?? "")
        case .unix(let path):
            return "unix://\(path)" + (database.map { "?db=\($0)" } ?? "")
        }
    }

    public static func == (a: RedisEndpoint, b: RedisEndpoint) -> Bool {
        a.address == b.address && a.username == b.username && a.password == b.password && a.database == b.database
    }

    public static func parse(_ url: String) -> Result<RedisEndpoint, ScalerError> {
        do {
            var endpoint = try parseOrThrow(url)
            endpoint.sourceSecrets.append(url)
            return .success(endpoint)
        } catch {
            return .failure(error)
        }
    }

    private enum Scheme { case tcp, unix }

    private static func parseOrThrow(_ url: String) throws(ScalerError) -> RedisEndpoint {
        guard let separator = url.firstRange(of: "://") else {
            throw ScalerError("the Redis URL must start with redis:// or unix://")
        }
        let scheme: Scheme
        switch url[..<separator.lowerBound].lowercased() {
        case "redis": scheme = .tcp
        case "unix", "redis+unix": scheme = .unix
        case "rediss":
            throw ScalerError(
                "TLS (rediss://) is not supported; connect to Redis without TLS (redis://), "
                    + "through a local TLS tunnel, or over a UNIX socket (unix://)")
        default:
            throw ScalerError("the Redis URL must start with redis:// or unix://")
        }
        var rest = url[separator.upperBound...]

        // The user info runs to the last "@", so that an unencoded "@" or "/" in a password still works.
        var username: String?
        var password: String?
        var rawPassword: Substring?
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                username = try decoded(userinfo[..<colon], part: "user name")
                rawPassword = userinfo[userinfo.index(after: colon)...]
            } else {
                rawPassword = userinfo
            }
            if let rawPassword { password = try decoded(rawPassword, part: "password") }
        }

        var query: [(key: Substring, value: Substring)] = []
        if let mark = rest.firstIndex(of: "?") {
            for item in rest[rest.index(after: mark)...].split(separator: "&") {
                guard let equals = item.firstIndex(of: "=") else {
                    throw ScalerError("a query parameter in the Redis URL has no value (expected db=N)")
                }
                query.append((item[..<equals], item[item.index(after: equals)...]))
            }
            rest = rest[..<mark]
        }

        var database: Int?
        var sourceSecrets: [String] = []
        for (key, value) in query {
            switch key.lowercased() {
            case "db":
                guard database == nil else { throw ScalerError("the database is given twice in the Redis URL") }
                database = try databaseNumber(value)
            case "password":
                guard password == nil else { throw ScalerError("the password is given twice in the Redis URL") }
                password = try decoded(value, part: "password")
                rawPassword = value
            case "username", "user":
                guard username == nil else { throw ScalerError("the user name is given twice in the Redis URL") }
                username = try decoded(value, part: "user name")
            default:
                throw ScalerError("the Redis URL has an unknown query parameter (known: db, password, username)")
            }
        }
        if let rawPassword, !rawPassword.isEmpty { sourceSecrets.append(String(rawPassword)) }
        if password?.isEmpty == true { password = nil }
        if username?.isEmpty == true { username = nil }
        if username != nil, password == nil {
            throw ScalerError("the Redis URL names a user but no password (expected user:password@)")
        }

        let address: Address
        switch scheme {
        case .unix:
            guard rest.first == "/" else {
                throw ScalerError("the socket path in the Redis URL must be absolute (unix:///path/to/redis.sock)")
            }
            address = .unix(path: try decoded(rest, part: "socket path"))
        case .tcp:
            var hostPort = rest
            if let slash = rest.firstIndex(of: "/") {
                hostPort = rest[..<slash]
                let path = rest[rest.index(after: slash)...]
                if !path.isEmpty {
                    guard database == nil else { throw ScalerError("the database is given twice in the Redis URL") }
                    database = try databaseNumber(path)
                }
            }
            let (host, port) = try hostAndPort(hostPort)
            address = .tcp(host: host, port: port)
        }

        var endpoint = RedisEndpoint(address: address, username: username, password: password, database: database)
        endpoint.sourceSecrets = sourceSecrets
        return endpoint
    }

    private static func hostAndPort(_ text: Substring) throws(ScalerError) -> (String, Int) {
        var host: Substring
        var portText: Substring?
        if text.first == "[" {
            guard let close = text.firstIndex(of: "]") else {
                throw ScalerError("the IPv6 address in the Redis URL has no closing ]")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw ScalerError("the Redis URL has text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        guard !host.isEmpty else { throw ScalerError("the Redis URL has no host") }
        guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._:%".contains($0)) }) else {
            throw ScalerError("the host in the Redis URL is not a valid host name or address")
        }
        var port = defaultPort
        if let portText {
            guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(portText) else {
                throw ScalerError("the port in the Redis URL is not a number")
            }
            guard (1...65535).contains(number) else {
                throw ScalerError("the port in the Redis URL is out of range (1-65535)")
            }
            port = number
        }
        return (String(host), port)
    }

    private static func databaseNumber(_ text: Substring) throws(ScalerError) -> Int {
        guard !text.isEmpty, text.count <= 9, text.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(text) else {
            throw ScalerError("the database in the Redis URL is not a number")
        }
        return number
    }

    /// Percent-decoding (`%40` → `@`); `+` stays `+`.
    private static func decoded(_ text: Substring, part: String) throws(ScalerError) -> String {
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = utf8.popFirst().flatMap(hexValue), let low = utf8.popFirst().flatMap(hexValue) else {
                throw ScalerError("the \(part) in the Redis URL is not correctly percent-encoded")
            }
            bytes.append(high << 4 | low)
        }
        let string = String(decoding: bytes, as: UTF8.self)
        guard string.utf8.elementsEqual(bytes) else {
            throw ScalerError("the \(part) in the Redis URL is not valid UTF-8 once percent-decoded")
        }
        return string
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
