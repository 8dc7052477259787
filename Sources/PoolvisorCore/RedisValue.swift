/// One reply from Redis, as the edge's client decoded it: the only thing that crosses from a scaler
/// thread to the loop (Sendable values, never a C handle).
public enum RedisValue: Sendable, Equatable {
    case integer(Int64)
    case string(String)
    /// A status reply such as `OK` or `QUEUED`.
    case status(String)
    /// An error reply such as `WRONGTYPE Operation against a key holding the wrong kind of value`.
    case error(String)
    case array([RedisValue])
    case null
}

/// Why a scaler source gave no reading: a message for status and the log, already free of any
/// connection string or password.
public struct ScalerError: Error, Sendable, Equatable, CustomStringConvertible, Codable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// The message without a reconnect countdown ("reconnecting in 2 s: connection refused" →
    /// "connection refused"): what stays the same while a source stays down, so it is logged once.
    public var cause: String {
        guard message.hasPrefix("reconnecting in "), let colon = message.firstIndex(of: ":") else { return message }
        return String(message[message.index(after: colon)...].drop { $0 == " " })
    }
}
