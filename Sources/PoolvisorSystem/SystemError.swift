import Glibc
import PoolvisorCore

/// A failed system call: what was attempted, and errno.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(SystemError.message(errno))" }

    public static func message(_ errno: Int32) -> String {
        String(cString: strerror(errno))
    }
}
