import CHiredis
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// hiredis' functions, resolved with dlsym at first use (the module map links nothing).
///
/// The structs are read through offset tables rather than the header's declarations, because the
/// library found at run time need not match the header the build saw: hiredis 1.0 put a function table
/// pointer in front of `redisContext` and added `dval` and `vtype` to `redisReply`. The functions used
/// here have the same prototypes in 0.14 and 1.x; contexts and replies are opaque pointers.
struct Hiredis: @unchecked Sendable {  // immutable C function pointers
    typealias Context = UnsafeMutableRawPointer
    typealias Reply = UnsafeMutableRawPointer

    /// Struct layouts on LP64 (x86_64, arm64).
    struct Layout: Sendable, Equatable {
        var contextErr: Int
        var contextErrstr: Int
        var contextFD: Int
        var replyLen: Int
        var replyStr: Int
        var replyElements: Int
        var replyElement: Int

        /// hiredis 0.14 (Debian 12's libhiredis0.14).
        static let v0 = Layout(
            contextErr: 0, contextErrstr: 4, contextFD: 132,
            replyLen: 16, replyStr: 24, replyElements: 32, replyElement: 40)
        /// hiredis 1.x: `const redisContextFuncs *funcs` first; `double dval` and `char vtype[4]` in replies.
        static let v1 = Layout(
            contextErr: 8, contextErrstr: 12, contextFD: 140,
            replyLen: 24, replyStr: 32, replyElements: 48, replyElement: 56)
    }

    let soname: String
    let layout: Layout
    let connectWithTimeout: @convention(c) (UnsafePointer<CChar>?, Int32, timeval) -> Context?
    let connectUnixWithTimeout: @convention(c) (UnsafePointer<CChar>?, timeval) -> Context?
    let setTimeout: @convention(c) (Context?, timeval) -> Int32
    let free: @convention(c) (Context?) -> Void
    let appendCommandArgv: @convention(c) (Context?, Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int>?) -> Int32
    let bufferWrite: @convention(c) (Context?, UnsafeMutablePointer<Int32>?) -> Int32
    let bufferRead: @convention(c) (Context?) -> Int32
    let getReplyFromReader: @convention(c) (Context?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    let freeReplyObject: @convention(c) (UnsafeMutableRawPointer?) -> Void

    /// Debian 12 ships 0.14; newer distributions 1.x.
    static let sonames = ["libhiredis.so.0.14", "libhiredis.so.1.1.0", "libhiredis.so.1.0.0", "libhiredis.so"]

    static let shared = LazyLibrary<Hiredis> { load(sonames) }

    static func load(_ candidates: [String]) -> Result<Hiredis, ScalerError> {
        guard MemoryLayout<Int>.size == 8 else {
            return .failure(ScalerError("the Redis client supports 64-bit systems only"))
        }
        return DynamicLibrary.open(candidates, library: "hiredis", package: "libhiredis0.14 (or libhiredis1.1.0)")
            .flatMap { lib in Result { () throws(ScalerError) in try Hiredis(lib) } }
    }

    private init(_ lib: DynamicLibrary) throws(ScalerError) {
        soname = lib.soname
        if lib.soname.hasPrefix("libhiredis.so.0.") {
            layout = .v0
        } else if lib.soname.hasPrefix("libhiredis.so.1.") {
            layout = .v1
        } else {
            // An unversioned name: redisConnectWithOptions arrived with 1.0.
            layout = lib.has("redisConnectWithOptions") ? .v1 : .v0
        }
        connectWithTimeout = try lib.function("redisConnectWithTimeout")
        connectUnixWithTimeout = try lib.function("redisConnectUnixWithTimeout")
        setTimeout = try lib.function("redisSetTimeout")
        free = try lib.function("redisFree")
        appendCommandArgv = try lib.function("redisAppendCommandArgv")
        bufferWrite = try lib.function("redisBufferWrite")
        bufferRead = try lib.function("redisBufferRead")
        getReplyFromReader = try lib.function("redisGetReplyFromReader")
        freeReplyObject = try lib.function("freeReplyObject")
    }

    /// The layout of the header this build compiled against (a test checks the tables against it).
    static var headerLayout: Layout {
        Layout(
            contextErr: MemoryLayout<redisContext>.offset(of: \.err)!,
            contextErrstr: MemoryLayout<redisContext>.offset(of: \.errstr)!,
            contextFD: MemoryLayout<redisContext>.offset(of: \.fd)!,
            replyLen: MemoryLayout<redisReply>.offset(of: \.len)!,
            replyStr: MemoryLayout<redisReply>.offset(of: \.str)!,
            replyElements: MemoryLayout<redisReply>.offset(of: \.elements)!,
            replyElement: MemoryLayout<redisReply>.offset(of: \.element)!)
    }

    // MARK: Reading the structs

    func error(of context: Context) -> (code: Int32, message: String) {
        let code = context.load(fromByteOffset: layout.contextErr, as: Int32.self)
        let bytes = UnsafeRawBufferPointer(start: context + layout.contextErrstr, count: 128)
        let text = bytes.prefix { $0 != 0 }
        return (code, String(decoding: text, as: UTF8.self))
    }

    func fd(of context: Context) -> Int32 {
        context.load(fromByteOffset: layout.contextFD, as: Int32.self)
    }

    /// A reply tree as a Sendable value (RESP3 types, which hiredis 1.x reports only after HELLO 3,
    /// are mapped onto the RESP2 ones).
    func value(of reply: Reply) -> RedisValue {
        let type = reply.load(as: Int32.self)
        func text() -> String {
            let length = reply.load(fromByteOffset: layout.replyLen, as: Int.self)
            guard let str = reply.load(fromByteOffset: layout.replyStr, as: UnsafePointer<UInt8>?.self) else { return "" }
            return String(decoding: UnsafeBufferPointer(start: str, count: length), as: UTF8.self)
        }
        switch type {
        case 1, 7, 13, 14: return .string(text())  // STRING, DOUBLE, BIGNUM, VERB
        case 3, 8: return .integer(reply.load(fromByteOffset: 8, as: Int64.self))  // INTEGER, BOOL
        case 4: return .null
        case 5: return .status(text())
        case 6: return .error(text())
        case 2, 9, 10, 11, 12:  // ARRAY, MAP, SET, ATTR, PUSH
            let count = reply.load(fromByteOffset: layout.replyElements, as: Int.self)
            guard count > 0,
                let elements = reply.load(fromByteOffset: layout.replyElement, as: UnsafePointer<Reply?>?.self)
            else { return .array([]) }
            return .array((0..<count).map { index in elements[index].map { value(of: $0) } ?? .null })
        default:
            return .error("unsupported reply type \(type)")
        }
    }
}

/// A Redis connection for one scaler, owned by one thread (the scaler thread beside the event loop,
/// never the loop itself): only Sendable values leave it.
///
/// - It connects at the first call (TCP or UNIX socket), then sends AUTH (with the user name if given)
///   and SELECT when the endpoint has them, and reuses the connection.
/// - `run` pipelines its commands and returns one `RedisValue` per command; error replies such as
///   WRONGTYPE are values (`.error`), not failures. A failure is an I/O error, a timeout or a protocol
///   error, and drops the connection. A reused connection found closed before any reply came back is
///   replaced once within the same call.
/// - After a failed connection attempt, calls fail at once with "reconnecting in 2 s: <why>" until the
///   retry time (0.5 s doubling to 30 s; reset by a successful connection).
/// - Every call returns within `timeout`: connecting uses redisConnectWithTimeout with the time left,
///   and the commands go out and the replies come in through poll(2) with the deadline.
/// - No message contains the URL or the password.
final class RedisClient: ReusedConnection {
    let endpoint: RedisEndpoint
    private let timeout: Duration
    private var hiredis: Hiredis?
    var connection: Hiredis.Context?
    var backoff = ReconnectBackoff()

    init(endpoint: RedisEndpoint, timeout: Duration) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    deinit { close() }

    /// Whether a connection is open (for tests).
    var isConnected: Bool { connection != nil }

    /// Disconnects (a later call connects again).
    func close() {
        dropConnection()
        backoff.connected()
    }

    func run(_ commands: [[String]]) -> Result<[RedisValue], ScalerError> {
        let deadline = MonotonicClock.now() + timeout
        guard !commands.isEmpty else { return .success([]) }
        guard commands.allSatisfy({ !$0.isEmpty }) else { return .failure(ScalerError("a Redis command is empty")) }
        let hiredis: Hiredis
        switch Hiredis.shared.get() {
        case .success(let loaded): hiredis = loaded
        case .failure(let error): return .failure(error)
        }
        self.hiredis = hiredis

        return withConnection(until: deadline, connect: { connect(hiredis, until: $0) }) { context in
            switch exchange(hiredis, context, commands, until: deadline) {
            case .success(let values): .finished(.success(values))
            // Whatever failed, the connection's state is unknown: it is dropped.
            case .failure(let failure): .broken(failure.error, retryable: failure.beforeAnyReply)
            }
        }
    }

    // MARK: - Connecting

    private func connect(_ hiredis: Hiredis, until deadline: Instant) -> Result<Hiredis.Context, ScalerError> {
        let remaining = timeval(max(deadline.since(MonotonicClock.now()), .milliseconds(1)))
        let opened: Hiredis.Context?
        switch endpoint.address {
        case .tcp(let host, let port): opened = hiredis.connectWithTimeout(host, Int32(port), remaining)
        case .unix(let path): opened = hiredis.connectUnixWithTimeout(path, remaining)
        }
        guard let context = opened else {
            return .failure(ScalerError("cannot connect to Redis at \(endpoint): out of memory"))
        }
        let (code, message) = hiredis.error(of: context)
        if code != 0 {
            hiredis.free(context)
            return .failure(ScalerError("cannot connect to Redis at \(endpoint): \(redact(message))"))
        }

        var handshake: [[String]] = []
        if let password = endpoint.password {
            handshake.append(["AUTH"] + (endpoint.username.map { [$0] } ?? []) + [password])
        }
        if let database = endpoint.database, database != 0 {
            handshake.append(["SELECT", String(database)])
        }
        guard !handshake.isEmpty else { return .success(context) }
        switch exchange(hiredis, context, handshake, until: deadline) {
        case .failure(let failure):
            hiredis.free(context)
            let what =
                failure.timedOut
                ? "no answer to \(handshake.map { $0[0] }.joined(separator: " and ")) within \(timeout.humanReadable)" : failure.error.message
            return .failure(ScalerError("cannot connect to Redis at \(endpoint): \(what)"))
        case .success(let replies):
            for (command, reply) in zip(handshake, replies) {
                guard case .error(let message) = reply else { continue }
                hiredis.free(context)
                let what = command[0] == "AUTH" ? "authentication failed" : "SELECT \(command[1]) failed"
                return .failure(ScalerError("cannot connect to Redis at \(endpoint): \(what): \(redact(message))"))
            }
            return .success(context)
        }
    }

    // MARK: - Pipelining

    private struct ExchangeFailure: Error {
        var error: ScalerError
        /// Nothing came back: the server cannot have run anything (a connection closed while idle).
        var beforeAnyReply: Bool
        var timedOut = false
    }

    /// Appends every command, sends them all, then reads one reply per command.
    private func exchange(
        _ hiredis: Hiredis, _ context: Hiredis.Context, _ commands: [[String]], until deadline: Instant
    ) -> Result<[RedisValue], ExchangeFailure> {
        func failure(_ message: String, beforeAnyReply: Bool) -> Result<[RedisValue], ExchangeFailure> {
            .failure(ExchangeFailure(error: ScalerError(redact(message)), beforeAnyReply: beforeAnyReply))
        }
        func timedOut() -> Result<[RedisValue], ExchangeFailure> {
            .failure(
                ExchangeFailure(
                    error: ScalerError("the Redis command timed out after \(timeout.humanReadable)"),
                    beforeAnyReply: false, timedOut: true))
        }
        func ioError(_ what: String) -> String {
            let (code, message) = hiredis.error(of: context)
            switch code {
            case 3: return "the Redis server closed the connection"  // REDIS_ERR_EOF
            case 4: return "Redis protocol error: \(message)"  // REDIS_ERR_PROTOCOL
            case 5: return "out of memory"  // REDIS_ERR_OOM
            default: return "\(what) Redis failed: \(message.isEmpty ? "I/O error" : message)"
            }
        }

        for command in commands {
            guard append(hiredis, context, command) else {
                return failure("cannot queue a Redis command: \(hiredis.error(of: context).message)", beforeAnyReply: true)
            }
        }
        // A guard for the blocking socket hiredis uses: no single read or write outlasts the deadline.
        _ = hiredis.setTimeout(context, timeval(max(deadline.since(MonotonicClock.now()), .milliseconds(1))))
        let fd = hiredis.fd(of: context)

        var done: Int32 = 0
        while done == 0 {
            switch waitForSocket(fd, events: Int16(POLLOUT), until: deadline) {
            case .ready: break
            case .timedOut: return timedOut()
            case .failed(let reason): return failure("writing to Redis failed: \(reason)", beforeAnyReply: true)
            }
            let rc = withSIGPIPEBlocked { hiredis.bufferWrite(context, &done) }
            if rc != 0 { return failure(ioError("writing to"), beforeAnyReply: true) }
        }

        var values: [RedisValue] = []
        values.reserveCapacity(commands.count)
        while values.count < commands.count {
            var reply: UnsafeMutableRawPointer?
            if hiredis.getReplyFromReader(context, &reply) != 0 {
                return failure(ioError("reading from"), beforeAnyReply: values.isEmpty)
            }
            if let reply {
                values.append(hiredis.value(of: reply))
                hiredis.freeReplyObject(reply)
                continue
            }
            switch waitForSocket(fd, events: Int16(POLLIN), until: deadline) {
            case .ready: break
            case .timedOut: return timedOut()
            case .failed(let reason): return failure("reading from Redis failed: \(reason)", beforeAnyReply: values.isEmpty)
            }
            if hiredis.bufferRead(context) != 0 {
                return failure(ioError("reading from"), beforeAnyReply: values.isEmpty)
            }
        }
        return .success(values)
    }

    /// redisAppendCommandArgv with exact byte lengths (arguments may contain NUL bytes).
    private func append(_ hiredis: Hiredis, _ context: Hiredis.Context, _ command: [String]) -> Bool {
        let buffers = command.map { argument -> UnsafeMutableBufferPointer<CChar> in
            let bytes = Array(argument.utf8)
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: bytes.count + 1)
            for (index, byte) in bytes.enumerated() { buffer[index] = CChar(bitPattern: byte) }
            buffer[bytes.count] = 0
            return buffer
        }
        defer { buffers.forEach { $0.deallocate() } }
        var argv: [UnsafePointer<CChar>?] = buffers.map { UnsafePointer($0.baseAddress) }
        let lengths: [Int] = command.map { $0.utf8.count }
        return hiredis.appendCommandArgv(context, Int32(command.count), &argv, lengths) == 0
    }

    func dropConnection() {
        if let hiredis, let connection { hiredis.free(connection) }
        connection = nil
    }

    private func redact(_ message: String) -> String {
        redacting(message, secrets: endpoint.secrets)
    }
}

extension timeval {
    init(_ duration: Duration) {
        let nanoseconds = max(duration.nanosecondsClamped, 0)
        self.init(tv_sec: Int(nanoseconds / 1_000_000_000), tv_usec: Int(nanoseconds % 1_000_000_000 / 1000))
    }
}

/// Runs `body` with SIGPIPE blocked in this thread, and discards a SIGPIPE it raised: hiredis writes
/// with send(…, 0), which raises SIGPIPE on a connection the server closed, and a library must not
/// depend on the process ignoring it (the daemon does; a test runner may not).
func withSIGPIPEBlocked<R>(_ body: () -> R) -> R {
    var pipeOnly = sigset_t()
    sigemptyset(&pipeOnly)
    sigaddset(&pipeOnly, SIGPIPE)
    var pendingBefore = sigset_t()
    sigpending(&pendingBefore)
    let wasPending = sigismember(&pendingBefore, SIGPIPE) == 1
    var previous = sigset_t()
    pthread_sigmask(SIG_BLOCK, &pipeOnly, &previous)
    let result = body()
    if !wasPending {
        var pending = sigset_t()
        sigpending(&pending)
        if sigismember(&pending, SIGPIPE) == 1 {
            var zero = timespec(tv_sec: 0, tv_nsec: 0)
            _ = sigtimedwait(&pipeOnly, nil, &zero)
        }
    }
    pthread_sigmask(SIG_SETMASK, &previous, nil)
    return result
}
