import PoolvisorCore
import PoolvisorSystem

/// How one use of an open connection ended.
enum ConnectionUse<Value> {
    case finished(Result<Value, ScalerError>)
    /// The connection is broken and must be dropped. `retryable`: nothing of the call took effect, so a
    /// fresh connection may run it again.
    case broken(ScalerError, retryable: Bool)
}

/// A scaler client's one connection, reused from call to call: what PostgresClient and RedisClient share.
protocol ReusedConnection: AnyObject {
    associatedtype Connection
    var connection: Connection? { get set }
    var backoff: ReconnectBackoff { get set }
    /// Closes `connection` (if any) and forgets it.
    func dropConnection()
}

extension ReusedConnection {
    /// Connects when there is no connection (or fails at once while the reconnect backoff says to
    /// wait), then runs `use` on it. A reused connection found broken (a server restart, an idle
    /// timeout) is dropped and the call runs once more on a fresh one, if the deadline allows.
    func withConnection<Value>(
        until deadline: Instant,
        connect: (Instant) -> Result<Connection, ScalerError>,
        _ use: (Connection) -> ConnectionUse<Value>
    ) -> Result<Value, ScalerError> {
        var retried = false
        while true {
            let reused = connection != nil
            let open: Connection
            if let connection {
                open = connection
            } else {
                if let wait = backoff.waiting(at: MonotonicClock.now()) { return .failure(wait) }
                switch connect(deadline) {
                case .success(let connected):
                    backoff.connected()
                    connection = connected
                    open = connected
                case .failure(let error):
                    backoff.connectFailed(error.message, at: MonotonicClock.now())
                    return .failure(error)
                }
            }
            switch use(open) {
            case .finished(let result):
                return result
            case .broken(let error, let retryable):
                dropConnection()
                if reused, retryable, !retried, MonotonicClock.now() < deadline {
                    retried = true
                    continue
                }
                return .failure(error)
            }
        }
    }
}
