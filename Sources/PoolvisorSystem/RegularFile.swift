import Glibc
import PoolvisorCore

/// Why a file could not be read, in words for a diagnostic or a log line.
public struct FileReadError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Files poolvisor reads (the pools file, env files, /proc and /sys), read so that no file can hang or
/// grow it.
public enum RegularFile {
    /// 1 MiB: the pools file, an env file, a file of /proc or /sys.
    public static let defaultLimit = 1 << 20

    /// Reads a regular file of at most `limit` bytes without ever blocking: opened O_NONBLOCK (a FIFO
    /// then opens at once, with no writer needed) and refused unless fstat says it is a regular file,
    /// so neither a FIFO nor a device (/dev/zero) can hang or grow the reader. `what` names the file
    /// in the message about the size limit.
    public static func read(_ path: String, limit: Int = defaultLimit, what: String = "a file poolvisor reads") -> Result<String, FileReadError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return .failure(FileReadError(SystemError.message(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(FileReadError(SystemError.message(errno))) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            return .failure(FileReadError("not a regular file (\(Self.fileType(st.st_mode)))"))
        }
        // /proc and /sys files say 0; the reading enforces the limit for them.
        if st.st_size > limit { return .failure(tooLarge(limit, what)) }
        return readStream(fd, limit: limit, what: what)
    }

    private static func tooLarge(_ limit: Int, _ what: String) -> FileReadError {
        FileReadError("larger than \(limit >= 1 << 20 ? "\(limit >> 20) MiB" : "\(limit >> 10) KiB"), the limit for \(what)")
    }

    /// Reads `fd` to its end, refusing more than `limit` bytes.
    public static func readStream(_ fd: Int32, limit: Int, what: String = "a file poolvisor reads") -> Result<String, FileReadError> {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                guard bytes.count + n <= limit else { return .failure(tooLarge(limit, what)) }
                bytes += chunk[0..<n]
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .failure(FileReadError(SystemError.message(errno))) }
            break
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }

    public static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "not a regular file"
        }
    }
}

extension Result {
    /// The value, or nil for a failure.
    public var success: Success? {
        if case .success(let s) = self { return s }
        return nil
    }
}
