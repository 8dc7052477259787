// TEMPORARY until the cron branch lands.
public struct CronError: Error, Sendable, Equatable, CustomStringConvertible { public var description: String }
public struct CronSchedule: Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public static func parse(_ text: String) -> Result<CronSchedule, CronError> { .success(CronSchedule(description: text)) }
}
public struct CivilTime: Sendable, Equatable {}
public struct CronWindow: Sendable, Equatable {
    public var start: CronSchedule
    public var end: CronSchedule
    public init(start: CronSchedule, end: CronSchedule) { self.start = start; self.end = end }
    public func isOpen(at: CivilTime) -> Bool { false }
}
public struct RedisEndpoint { public static func parse(_ s: String) -> Result<RedisEndpoint, ScalerError> { .success(RedisEndpoint()) } }
