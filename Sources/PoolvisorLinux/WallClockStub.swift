// TEMPORARY until the cron branch lands.
import PoolvisorCore
final class PostgresClient {
    init(connectionString: String, timeout: Duration) {}
    func queryNumber(_ sql: String) -> Result<Double, ScalerError> { .failure(ScalerError("stub")) }
    func close() {}
}
final class RedisClient {
    init(endpoint: RedisEndpoint, timeout: Duration) {}
    func run(_ commands: [[String]]) -> Result<[RedisValue], ScalerError> { .failure(ScalerError("stub")) }
    func close() {}
}
