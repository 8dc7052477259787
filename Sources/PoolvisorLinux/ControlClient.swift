import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// The CLI's side of the control socket: one blocking request/answer exchange, bounded by a deadline.
public enum ControlClient {
    /// Answers longer than this are refused rather than buffered without end.
    public static let maximumResponseBytes = 64 * 1024 * 1024

    /// Connects to `path`, sends `line` and a newline, and returns the first line of the answer
    /// (without its newline). `timeout` covers the whole exchange, connect included: connecting waits
    /// when the server's backlog is full, which is how a hung supervisor shows.
    public static func request(socket path: String, line: [UInt8], timeout: Duration) throws(ControlClientError) -> [UInt8] {
        guard !line.contains(newline) else { throw .protocol("a request must be a single line") }
        let deadline = MonotonicClock.now() + timeout
        let fd = try connect(path, deadline: deadline, timeout: timeout)
        defer { close(fd) }
        try send(line + [newline], to: fd, path: path, deadline: deadline, timeout: timeout)
        return try receiveLine(from: fd, path: path, deadline: deadline, timeout: timeout)
    }

    private static let newline = UInt8(ascii: "\n")

    /// A connection to the control socket by `deadline`, or why not in the operator's words.
    private static func connect(_ path: String, deadline: Instant, timeout: Duration) throws(ControlClientError) -> Int32 {
        let fd = cshim_stream_connect(path, Int32(clamping: max(millisecondsLeft(until: deadline), 1)))
        guard fd >= 0 else {
            switch -fd {
            case ENOENT, ECONNREFUSED, ENOTDIR: throw .notRunning(path)
            case EACCES, EPERM: throw .permissionDenied(path)
            case EAGAIN: throw .timedOut(path, after: timeout)
            default: throw .system(SystemError("connect to \(path)", errno: -fd))
            }
        }
        return fd
    }

    /// A request whose answer is a stream of lines (`events --follow`): each line goes to `onLine`
    /// as it comes, the first within `timeout`, the others whenever they come, until the supervisor
    /// closes the connection (then this returns) or `onLine` returns false.
    public static func stream(socket path: String, line: [UInt8], timeout: Duration, onLine: ([UInt8]) -> Bool) throws(ControlClientError) {
        guard !line.contains(newline) else { throw .protocol("a request must be a single line") }
        var deadline = MonotonicClock.now() + timeout
        let fd = try connect(path, deadline: deadline, timeout: timeout)
        defer { close(fd) }
        try send(line + [newline], to: fd, path: path, deadline: deadline, timeout: timeout)
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var first = true
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                pending += buffer[0..<n]
                while let nl = pending.firstIndex(of: newline) {
                    let lineBytes = Array(pending[..<nl])
                    pending.removeSubrange(...nl)
                    first = false
                    guard onLine(lineBytes) else { return }
                }
                guard pending.count <= maximumResponseBytes else { throw .protocol("a line from \(path) is longer than \(maximumResponseBytes) bytes") }
                continue
            }
            if n == 0 || errno == ECONNRESET {
                if first { throw .protocol("\(path) closed the connection without answering") }
                return
            }
            switch errno {
            case EINTR: continue
            case EAGAIN:
                if !first { deadline = MonotonicClock.now() + .seconds(86_400 * 365) }
                try wait(fd, for: POLLIN, path: path, deadline: deadline, timeout: timeout)
            default: throw .system(SystemError("receive from \(path)"))
            }
        }
    }

    /// Stops quietly when the server has hung up: it may have said why (too many connections,
    /// permission denied), and the answer is read next.
    private static func send(_ bytes: [UInt8], to fd: Int32, path: String, deadline: Instant, timeout: Duration)
        throws(ControlClientError)
    {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 {
                offset += n
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN: try wait(fd, for: POLLOUT, path: path, deadline: deadline, timeout: timeout)
            case EPIPE, ECONNRESET: return
            default: throw .system(SystemError("send to \(path)"))
            }
        }
    }

    private static func receiveLine(from fd: Int32, path: String, deadline: Instant, timeout: Duration)
        throws(ControlClientError) -> [UInt8]
    {
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                let chunk = buffer[0..<n]
                if let nl = chunk.firstIndex(of: newline) {
                    answer += chunk[..<nl]
                    return answer
                }
                answer += chunk
                guard answer.count <= maximumResponseBytes else {
                    throw .protocol("the answer from \(path) is longer than \(maximumResponseBytes) bytes")
                }
                continue
            }
            if n == 0 || errno == ECONNRESET {
                throw .protocol("\(path) closed the connection \(answer.isEmpty ? "without answering" : "in the middle of its answer")")
            }
            switch errno {
            case EINTR: continue
            case EAGAIN: try wait(fd, for: POLLIN, path: path, deadline: deadline, timeout: timeout)
            default: throw .system(SystemError("receive from \(path)"))
            }
        }
    }

    /// poll() until `fd` is ready (or hung up, which the next call reports) or the deadline passes.
    private static func wait(_ fd: Int32, for event: Int32, path: String, deadline: Instant, timeout: Duration)
        throws(ControlClientError)
    {
        while true {
            let left = millisecondsLeft(until: deadline)
            guard left > 0 else { throw .timedOut(path, after: timeout) }
            var pfd = pollfd(fd: fd, events: Int16(event), revents: 0)
            let r = poll(&pfd, 1, Int32(clamping: left))
            if r > 0 { return }
            if r < 0 && errno != EINTR { throw .system(SystemError("poll")) }
        }
    }

    /// Rounded up, so that a deadline 0.3 ms away is not taken for one that has passed.
    private static func millisecondsLeft(until deadline: Instant) -> Int64 {
        let now = MonotonicClock.now()
        guard deadline > now else { return 0 }
        return Int64((deadline.nanoseconds - now.nanoseconds + 999_999) / 1_000_000)
    }
}

/// Why a control request failed, in words an operator can act on.
public enum ControlClientError: Error, CustomStringConvertible, Sendable {
    /// Nothing listens at the path (no file, or a socket left by a supervisor that died).
    case notRunning(String)
    /// The socket's mode (0660) keeps the caller out.
    case permissionDenied(String)
    /// Connected but no complete answer in time, or the backlog stayed full.
    case timedOut(String, after: Duration)
    /// The server broke the line protocol (hung up early, answer too long), or the request was not one line.
    case `protocol`(String)
    case system(SystemError)

    public var description: String {
        switch self {
        case .notRunning(let path):
            return "no poolvisor is listening at \(path) (is it running? is this the right --socket?)"
        case .permissionDenied(let path):
            return "permission denied on \(path): you need to be root, the user poolvisor runs as, or in its control_group"
        case .timedOut(let path, let timeout):
            return "no answer from \(path) within \(timeout.humanReadable.filter { $0 != " " })"
        case .protocol(let message):
            return message
        case .system(let error):
            return error.description
        }
    }
}
