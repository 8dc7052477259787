import CLibPQ
import Glibc
import PoolvisorCore
import PoolvisorSystem
import Synchronization

/// libpq's functions, resolved with dlsym from `libpq.so.5` at first use (the module map links nothing).
/// libpq's ABI has been stable under that soname since PostgreSQL 8.x; the header is used for its enum
/// types and the `PQconninfoOption` struct only.
struct LibPQ: @unchecked Sendable {  // immutable C function pointers
    typealias Conn = OpaquePointer
    typealias Result = OpaquePointer

    let connectStartParams: @convention(c) (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?, Int32) -> Conn?
    let connectPoll: @convention(c) (Conn?) -> PostgresPollingStatusType
    let status: @convention(c) (Conn?) -> ConnStatusType
    let transactionStatus: @convention(c) (Conn?) -> PGTransactionStatusType
    let errorMessage: @convention(c) (Conn?) -> UnsafeMutablePointer<CChar>?
    let socket: @convention(c) (Conn?) -> Int32
    let backendPID: @convention(c) (Conn?) -> Int32
    let setnonblocking: @convention(c) (Conn?, Int32) -> Int32
    let sendQuery: @convention(c) (Conn?, UnsafePointer<CChar>?) -> Int32
    let flush: @convention(c) (Conn?) -> Int32
    let consumeInput: @convention(c) (Conn?) -> Int32
    let isBusy: @convention(c) (Conn?) -> Int32
    let getResult: @convention(c) (Conn?) -> Result?
    let resultStatus: @convention(c) (Result?) -> ExecStatusType
    let resultErrorMessage: @convention(c) (Result?) -> UnsafeMutablePointer<CChar>?
    let resultErrorField: @convention(c) (Result?, Int32) -> UnsafeMutablePointer<CChar>?
    let ntuples: @convention(c) (Result?) -> Int32
    let nfields: @convention(c) (Result?) -> Int32
    let ftype: @convention(c) (Result?, Int32) -> Oid
    let getisnull: @convention(c) (Result?, Int32, Int32) -> Int32
    let getvalue: @convention(c) (Result?, Int32, Int32) -> UnsafeMutablePointer<CChar>?
    let clear: @convention(c) (Result?) -> Void
    let finish: @convention(c) (Conn?) -> Void
    let getCancel: @convention(c) (Conn?) -> OpaquePointer?
    let cancel: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int32) -> Int32
    let freeCancel: @convention(c) (OpaquePointer?) -> Void
    let conninfoParse: @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> UnsafeMutablePointer<PQconninfoOption>?
    let conndefaults: @convention(c) () -> UnsafeMutablePointer<PQconninfoOption>?
    let conninfoFree: @convention(c) (UnsafeMutablePointer<PQconninfoOption>?) -> Void
    let freemem: @convention(c) (UnsafeMutableRawPointer?) -> Void

    static let sonames = ["libpq.so.5"]

    /// Loaded once per process, at the first query of the first PostgreSQL scaler.
    static let shared = LazyLibrary<LibPQ> { load(sonames) }

    static func load(_ candidates: [String]) -> Swift.Result<LibPQ, ScalerError> {
        DynamicLibrary.open(candidates, library: "libpq", package: "libpq5").flatMap { lib in
            Swift.Result { () throws(ScalerError) in try LibPQ(lib) }
        }
    }

    private init(_ lib: DynamicLibrary) throws(ScalerError) {
        connectStartParams = try lib.function("PQconnectStartParams")
        connectPoll = try lib.function("PQconnectPoll")
        status = try lib.function("PQstatus")
        transactionStatus = try lib.function("PQtransactionStatus")
        errorMessage = try lib.function("PQerrorMessage")
        socket = try lib.function("PQsocket")
        backendPID = try lib.function("PQbackendPID")
        setnonblocking = try lib.function("PQsetnonblocking")
        sendQuery = try lib.function("PQsendQuery")
        flush = try lib.function("PQflush")
        consumeInput = try lib.function("PQconsumeInput")
        isBusy = try lib.function("PQisBusy")
        getResult = try lib.function("PQgetResult")
        resultStatus = try lib.function("PQresultStatus")
        resultErrorMessage = try lib.function("PQresultErrorMessage")
        resultErrorField = try lib.function("PQresultErrorField")
        ntuples = try lib.function("PQntuples")
        nfields = try lib.function("PQnfields")
        ftype = try lib.function("PQftype")
        getisnull = try lib.function("PQgetisnull")
        getvalue = try lib.function("PQgetvalue")
        clear = try lib.function("PQclear")
        finish = try lib.function("PQfinish")
        getCancel = try lib.function("PQgetCancel")
        cancel = try lib.function("PQcancel")
        freeCancel = try lib.function("PQfreeCancel")
        conninfoParse = try lib.function("PQconninfoParse")
        conndefaults = try lib.function("PQconndefaults")
        conninfoFree = try lib.function("PQconninfoFree")
        freemem = try lib.function("PQfreemem")
    }

    /// `(keyword, value)` for every option of a PQconninfoOption array, which is then freed.
    func options(_ array: UnsafeMutablePointer<PQconninfoOption>?) -> [(keyword: String, value: String?)] {
        guard let array else { return [] }
        defer { conninfoFree(array) }
        var result: [(String, String?)] = []
        var option = array
        while let keyword = option.pointee.keyword {
            result.append((String(cString: keyword), option.pointee.val.map { String(cString: $0) }))
            option += 1
        }
        return result
    }
}

/// A PostgreSQL connection for one scaler, owned by one thread (the scaler thread beside the event loop,
/// never the loop itself): only Sendable values leave it.
///
/// - It connects at the first query and reuses the connection. A connection found broken is dropped;
///   a query that finds a reused connection broken before it ran reconnects and runs once more.
/// - After a failed connection attempt, calls fail at once with "reconnecting in 2 s: <why>" until the
///   retry time (0.5 s doubling to 30 s; reset by a successful connection).
/// - Every call returns within `timeout`: the connection is made with PQconnectStartParams/PQconnectPoll
///   and the query sent with PQsendQuery, both waiting in poll(2) with the deadline. A query that runs
///   too long is cancelled (PQcancel on a short-lived thread of its own, since PQcancel blocks) and its
///   results are read and dropped at the start of the next call, which keeps the connection; if they
///   do not come in time, the connection is dropped instead.
/// - No message contains the connection string or the password.
final class PostgresClient: ReusedConnection {
    private let connectionString: String
    private let timeout: Duration
    private var pq: LibPQ?
    var connection: LibPQ.Conn?
    /// A query timed out and a cancel request was sent: its results must be read before the next query.
    private var draining = false
    var backoff = ReconnectBackoff()
    /// What must never appear in a message; nil until the connection string was checked.
    private var secrets: [String]?

    init(connectionString: String, timeout: Duration) {
        self.connectionString = connectionString
        self.timeout = timeout
    }

    deinit { close() }

    /// The backend process serving the current connection, or nil when not connected.
    var backendPID: Int32? {
        guard let pq, let connection else { return nil }
        return pq.backendPID(connection)
    }

    /// Disconnects (a later query connects again).
    func close() {
        dropConnection()
        backoff.connected()
    }

    /// Runs `sql`, which must return exactly one row of one numeric column (integer, numeric, float),
    /// and returns that number.
    func queryNumber(_ sql: String) -> Result<Double, ScalerError> {
        run(sql, expecting: .number).flatMap {
            if case .number(let n) = $0 { .success(n) } else { .failure(ScalerError("the query returned no number")) }
        }
    }

    /// Runs `sql`, which must return exactly one row of one text column, and returns that text.
    func queryText(_ sql: String) -> Result<String, ScalerError> {
        run(sql, expecting: .text).flatMap {
            if case .text(let t) = $0 { .success(t) } else { .failure(ScalerError("the query returned no text")) }
        }
    }

    /// Runs `sql`, a statement that returns no rows (CREATE, INSERT, DELETE).
    func command(_ sql: String) -> Result<Void, ScalerError> {
        run(sql, expecting: .command).map { _ in () }
    }

    /// What a statement must return.
    private enum Expecting { case number, text, command }

    /// What it returned.
    private enum Answer: Sendable { case number(Double), text(String), done }

    private func run(_ sql: String, expecting: Expecting) -> Result<Answer, ScalerError> {
        let deadline = MonotonicClock.now() + timeout
        let pq: LibPQ
        switch LibPQ.shared.get() {
        case .success(let loaded): pq = loaded
        case .failure(let error): return .failure(error)
        }
        self.pq = pq
        if secrets == nil {
            switch parseConnectionString(pq) {
            case .success(let found): secrets = found
            case .failure(let error): return .failure(error)
            }
        }

        if let connection, draining {
            let drainDeadline = min(deadline, MonotonicClock.now() + .seconds(timeout.seconds / 2))
            if !drain(pq, connection, until: drainDeadline) { dropConnection() }
        }

        return withConnection(until: deadline, connect: { connect(pq, until: $0) }) { connection in
            switch execute(pq, connection, sql, expecting: expecting, until: deadline) {
            case .value(let answer): .finished(.success(answer))
            case .failed(let error): .finished(.failure(error))
            case .timedOut: .finished(.failure(ScalerError("the query timed out after \(timeout.humanReadable)")))
            case .connectionLost(let error): .broken(error, retryable: true)
            }
        }
    }

    // MARK: - Connecting

    private func connect(_ pq: LibPQ, until deadline: Instant) -> Result<LibPQ.Conn, ScalerError> {
        let keywords = ["fallback_application_name", "dbname"]
        let values = ["poolvisor", connectionString]
        let started = withCStringArray(keywords) { k in
            withCStringArray(values) { v in pq.connectStartParams(k, v, 1) }
        }
        guard let conn = started else {
            return .failure(ScalerError("cannot connect to PostgreSQL: out of memory"))
        }
        var state = PGRES_POLLING_WRITING
        while true {
            if pq.status(conn) == CONNECTION_BAD || state == PGRES_POLLING_FAILED {
                let message = connectionMessage(pq, conn)
                pq.finish(conn)
                return .failure(ScalerError("cannot connect to PostgreSQL: \(message)"))
            }
            if state == PGRES_POLLING_OK {
                guard pq.setnonblocking(conn, 1) == 0 else {
                    let message = connectionMessage(pq, conn)
                    pq.finish(conn)
                    return .failure(ScalerError("cannot connect to PostgreSQL: \(message)"))
                }
                return .success(conn)
            }
            if state == PGRES_POLLING_READING || state == PGRES_POLLING_WRITING {
                let fd = pq.socket(conn)
                guard fd >= 0 else {
                    pq.finish(conn)
                    return .failure(ScalerError("cannot connect to PostgreSQL: the connection has no socket"))
                }
                let events = Int16(state == PGRES_POLLING_READING ? POLLIN : POLLOUT)
                switch waitForSocket(fd, events: events, until: deadline) {
                case .ready: break
                case .timedOut:
                    pq.finish(conn)
                    return .failure(ScalerError("connecting to PostgreSQL timed out after \(timeout.humanReadable)"))
                case .failed(let reason):
                    pq.finish(conn)
                    return .failure(ScalerError("cannot connect to PostgreSQL: \(reason)"))
                }
            }
            state = pq.connectPoll(conn)
        }
    }

    /// Checks the connection string with PQconninfoParse and collects what must never appear in a
    /// message: the string itself, and the password both as libpq decoded it and as it was written.
    private func parseConnectionString(_ pq: LibPQ) -> Result<[String], ScalerError> {
        let raw = Self.rawPasswords(in: connectionString)
        var errorText: UnsafeMutablePointer<CChar>?
        let parsed = pq.conninfoParse(connectionString, &errorText)
        guard parsed != nil else {
            var reason = "out of memory"
            if let errorText {
                reason = String(cString: errorText)
                pq.freemem(errorText)
            }
            let keywords = Set(pq.options(pq.conndefaults()).map(\.keyword))
            reason = redacting(oneLine(reason), secrets: [connectionString] + raw)
            reason = Self.maskingQuotedFragments(
                reason,
                keeping: { fragment in
                    keywords.contains(fragment) || fragment.count <= 1 || fragment == "***"
                        || (fragment.allSatisfy { $0.isLetter || $0 == "_" } && self.connectionString.contains(fragment + "="))
                })
            return .failure(ScalerError("the PostgreSQL connection string is not valid: \(reason)"))
        }
        let password = pq.options(parsed).first { $0.keyword == "password" }?.value
        return .success([connectionString] + raw + (password.map { [$0] } ?? []))
    }

    /// The password as written in a connection string, before libpq decodes it: the user info of a
    /// URI (`postgresql://user:PASSWORD@host`), a `password=` URI parameter, or a `password=` keyword.
    static func rawPasswords(in conninfo: String) -> [String] {
        var found: [String] = []
        if let scheme = conninfo.firstRange(of: "://") {
            let rest = conninfo[scheme.upperBound...]
            // libpq's user info ends at the first "@" unless a "/" comes first.
            if let end = rest.firstIndex(where: { $0 == "@" || $0 == "/" }), rest[end] == "@" {
                let userinfo = rest[..<end]
                if let colon = userinfo.firstIndex(of: ":") {
                    found.append(String(userinfo[userinfo.index(after: colon)...]))
                }
            }
            if let mark = rest.firstIndex(of: "?") {
                for item in rest[rest.index(after: mark)...].split(separator: "&") where item.hasPrefix("password=") {
                    found.append(String(item.dropFirst("password=".count)))
                }
            }
        } else {
            var rest = conninfo[...]
            while let range = rest.firstRange(of: "password") {
                var after = rest[range.upperBound...].drop { $0 == " " || $0 == "\t" }
                rest = rest[range.upperBound...]
                guard after.first == "=" else { continue }
                after = after.dropFirst().drop { $0 == " " || $0 == "\t" }
                if after.first == "'" {
                    let quoted = after.dropFirst()
                    var value = ""
                    var escaped = false
                    for character in quoted {
                        if escaped { value.append(character); escaped = false; continue }
                        if character == "\\" { escaped = true; continue }
                        if character == "'" { break }
                        value.append(character)
                    }
                    found.append(value)
                    found.append(String(quoted.prefix { $0 != "'" }))
                } else {
                    found.append(String(after.prefix { !$0.isWhitespace }))
                }
            }
        }
        return found.filter { !$0.isEmpty }
    }

    /// libpq quotes pieces of a connection string it cannot parse ("missing "=" after "…""), and any
    /// piece may be a password: every quoted fragment that `keeping` does not vouch for becomes `***`.
    static func maskingQuotedFragments(_ message: String, keeping: (String) -> Bool) -> String {
        var result = ""
        var rest = message[...]
        while let open = rest.firstIndex(of: "\"") {
            let afterOpen = rest.index(after: open)
            guard let close = rest[afterOpen...].firstIndex(of: "\"") else { break }
            let fragment = String(rest[afterOpen..<close])
            result += rest[...open]
            result += keeping(fragment) ? fragment : "***"
            result += "\""
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    // MARK: - Querying

    private enum Outcome {
        case value(Answer)
        /// The query failed; the connection is fine (or was already dropped).
        case failed(ScalerError)
        case connectionLost(ScalerError)
        /// Cancelled; the connection is draining, or was dropped.
        case timedOut
    }

    private func execute(_ pq: LibPQ, _ conn: LibPQ.Conn, _ sql: String, expecting: Expecting, until deadline: Instant) -> Outcome {
        guard pq.sendQuery(conn, sql) == 1 else {
            return .connectionLost(lost(pq, conn))
        }
        switch flush(pq, conn, until: deadline) {
        case .sent: break
        case .timedOut: return timedOut(pq, conn)
        case .lost: return .connectionLost(lost(pq, conn))
        }

        var first: Outcome?
        var results = 0
        var mustDrop = false
        while true {
            while pq.isBusy(conn) != 0 {
                switch waitForSocket(pq.socket(conn), events: Int16(POLLIN), until: deadline) {
                case .ready: break
                case .timedOut: return timedOut(pq, conn)
                case .failed: return .connectionLost(lost(pq, conn))
                }
                if pq.consumeInput(conn) == 0 { return .connectionLost(lost(pq, conn)) }
            }
            guard let result = pq.getResult(conn) else { break }
            results += 1
            let status = pq.resultStatus(result)
            if first == nil { first = interpret(pq, result, status, expecting: expecting) }
            pq.clear(result)
            if status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH {
                // libpq would wait for COPY data forever: give the connection up.
                mustDrop = true
                break
            }
        }
        if pq.status(conn) == CONNECTION_BAD {
            if case .failed(let error)? = first { return .connectionLost(error) }
            return .connectionLost(lost(pq, conn))
        }
        // A query that left a transaction open ("BEGIN; SELECT 1") would hold it between readings.
        if mustDrop || pq.transactionStatus(conn) != PQTRANS_IDLE { dropConnection() }
        if results > 1 {
            return .failed(ScalerError("the query returned \(results) results; it must be one statement that returns one number"))
        }
        return first ?? .failed(ScalerError("the query returned no result; it must return one number"))
    }

    private enum Flush { case sent, timedOut, lost }

    /// Sends what PQsendQuery left in libpq's buffer (non-blocking mode).
    private func flush(_ pq: LibPQ, _ conn: LibPQ.Conn, until deadline: Instant) -> Flush {
        while true {
            let rc = pq.flush(conn)
            if rc == 0 { return .sent }
            if rc < 0 { return .lost }
            switch waitForSocket(pq.socket(conn), events: Int16(POLLIN | POLLOUT), until: deadline) {
            case .ready(let readable, _):
                if readable, pq.consumeInput(conn) == 0 { return .lost }
            case .timedOut: return .timedOut
            case .failed: return .lost
            }
        }
    }

    private func interpret(_ pq: LibPQ, _ result: LibPQ.Result, _ status: ExecStatusType, expecting: Expecting) -> Outcome {
        switch (status, expecting) {
        case (PGRES_COMMAND_OK, .command), (PGRES_TUPLES_OK, .command):
            return .value(.done)
        case (PGRES_TUPLES_OK, .text), (PGRES_SINGLE_TUPLE, .text):
            return text(pq, result)
        default: break
        }
        switch status {
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            return number(pq, result)
        case PGRES_COMMAND_OK:
            return .failed(ScalerError("the statement returned no rows; it must be a query that returns one number"))
        case PGRES_EMPTY_QUERY:
            return .failed(ScalerError("the query is empty; it must return one number"))
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            return .failed(ScalerError("COPY is not supported; the query must return one number"))
        default:
            let field = { (code: UInt8) -> String? in
                pq.resultErrorField(result, Int32(code)).map { String(cString: $0) }
            }
            var message = field(UInt8(ascii: "M")) ?? pq.resultErrorMessage(result).map { String(cString: $0) } ?? ""
            message = oneLine(message)
            if message.isEmpty { message = "unknown error" }
            if let sqlstate = field(UInt8(ascii: "C")) { message += " (SQLSTATE \(sqlstate))" }
            return .failed(ScalerError("the query failed: \(redact(message))"))
        }
    }

    private static let numericTypes: Set<Oid> = [20, 21, 23, 700, 701, 1700]  // int8 int2 int4 float4 float8 numeric
    private static let typeNames: [Oid: String] = [
        16: "boolean", 17: "bytea", 18: "char", 19: "name", 25: "text", 26: "oid", 114: "json", 705: "unknown",
        790: "money", 1042: "character", 1043: "character varying", 1082: "date", 1083: "time",
        1114: "timestamp", 1184: "timestamp with time zone", 1186: "interval", 2950: "uuid", 3802: "jsonb",
    ]

    private func number(_ pq: LibPQ, _ result: LibPQ.Result) -> Outcome {
        let columns = pq.nfields(result)
        guard columns == 1 else {
            return .failed(ScalerError("the query returned \(columns) columns; it must return one number"))
        }
        let rows = pq.ntuples(result)
        guard rows == 1 else {
            return .failed(ScalerError("the query returned \(rows) rows; it must return one number"))
        }
        guard pq.getisnull(result, 0, 0) == 0 else {
            return .failed(ScalerError("the query returned NULL; use COALESCE(…, 0)"))
        }
        let type = pq.ftype(result, 0)
        guard Self.numericTypes.contains(type) else {
            let name = Self.typeNames[type] ?? "OID \(type)"
            return .failed(
                ScalerError(
                    "the query returned a value of type \(name); it must return a number (integer, numeric or float)"))
        }
        let text = pq.getvalue(result, 0, 0).map { String(cString: $0) } ?? ""
        guard let value = Double(text) else {
            return .failed(ScalerError("the query returned a value that is not a number"))
        }
        guard value.isFinite else {
            return .failed(ScalerError("the query returned \(text); it must return a finite number"))
        }
        return .value(.number(value))
    }

    /// One row of one column, as text (NULL is the empty text).
    private func text(_ pq: LibPQ, _ result: LibPQ.Result) -> Outcome {
        guard pq.nfields(result) == 1, pq.ntuples(result) == 1 else {
            return .failed(ScalerError("the query returned \(pq.ntuples(result)) rows of \(pq.nfields(result)) columns; it must return one text"))
        }
        if pq.getisnull(result, 0, 0) != 0 { return .value(.text("")) }
        return .value(.text(pq.getvalue(result, 0, 0).map { String(cString: $0) } ?? ""))
    }

    // MARK: - Cancelling and dropping

    /// The deadline passed while a query ran: ask the server to cancel it and read its remains later.
    private func timedOut(_ pq: LibPQ, _ conn: LibPQ.Conn) -> Outcome {
        if QueryCanceller.start(pq, conn) {
            draining = true
        } else {
            dropConnection()
        }
        return .timedOut
    }

    /// Reads and discards the results of a cancelled query. true when the connection is usable again.
    private func drain(_ pq: LibPQ, _ conn: LibPQ.Conn, until deadline: Instant) -> Bool {
        guard flush(pq, conn, until: deadline) == .sent else { return false }
        while true {
            while pq.isBusy(conn) != 0 {
                guard case .ready = waitForSocket(pq.socket(conn), events: Int16(POLLIN), until: deadline),
                    pq.consumeInput(conn) != 0
                else { return false }
            }
            guard let result = pq.getResult(conn) else { break }
            pq.clear(result)
        }
        draining = false
        return pq.status(conn) == CONNECTION_OK && pq.transactionStatus(conn) == PQTRANS_IDLE
    }

    func dropConnection() {
        if let pq, let connection { pq.finish(connection) }
        connection = nil
        draining = false
    }

    // MARK: - Messages

    private func redact(_ message: String) -> String {
        redacting(message, secrets: secrets ?? [connectionString])
    }

    /// PQerrorMessage, on one line and redacted.
    private func connectionMessage(_ pq: LibPQ, _ conn: LibPQ.Conn) -> String {
        let message = oneLine(pq.errorMessage(conn).map { String(cString: $0) } ?? "")
        return message.isEmpty ? "unknown error" : redact(message)
    }

    private func lost(_ pq: LibPQ, _ conn: LibPQ.Conn) -> ScalerError {
        ScalerError("the connection to PostgreSQL was lost: \(connectionMessage(pq, conn))")
    }
}

/// Sends cancel requests. PQcancel opens a new connection to the server and waits for it to close, with
/// no timeout of its own, so it runs on a short-lived detached thread: the scaler thread never waits for
/// it. A server that accepts connections but never answers would keep such a thread; at most
/// `maxInFlight` can exist at once (beyond that the connection is dropped instead of cancelled).
enum QueryCanceller {
    static let maxInFlight = 4
    private static let inFlight = Atomic<Int>(0)

    private final class Job: @unchecked Sendable {  // handed to exactly one thread
        let pq: LibPQ
        let cancel: OpaquePointer
        init(pq: LibPQ, cancel: OpaquePointer) {
            self.pq = pq
            self.cancel = cancel
        }
    }

    /// Starts a cancel request for the query running on `conn`; false when none could be started.
    static func start(_ pq: LibPQ, _ conn: LibPQ.Conn) -> Bool {
        guard inFlight.add(1, ordering: .relaxed).newValue <= maxInFlight else {
            inFlight.subtract(1, ordering: .relaxed)
            return false
        }
        guard let cancel = pq.getCancel(conn) else {
            inFlight.subtract(1, ordering: .relaxed)
            return false
        }
        let job = Unmanaged.passRetained(Job(pq: pq, cancel: cancel)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attributes, 256 * 1024)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, &attributes,
            { context in
                let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
                var reason = [CChar](repeating: 0, count: 256)
                _ = job.pq.cancel(job.cancel, &reason, Int32(reason.count))
                job.pq.freeCancel(job.cancel)
                QueryCanceller.inFlight.subtract(1, ordering: .relaxed)
                return nil
            }, job)
        guard rc == 0 else {
            let job = Unmanaged<Job>.fromOpaque(job).takeRetainedValue()
            pq.freeCancel(job.cancel)
            inFlight.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    static var running: Int { inFlight.load(ordering: .relaxed) }
}

/// `body` with a NULL-terminated array of C strings.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } } + [nil]
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
