import Glibc
import PoolvisorCore
import PoolvisorSystem
import Synchronization

/// A shared library opened with dlopen when first needed, so that a supervisor without a PostgreSQL or
/// Redis scaler never maps libpq (and the libssl/libcrypto it brings) or hiredis. Handles stay open
/// for the life of the process; dlsym on an open handle is thread-safe.
final class DynamicLibrary: Sendable {
    /// The name that was opened, such as `libpq.so.5`.
    let soname: String
    private let handle: Handle

    private struct Handle: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
    }

    private init(soname: String, handle: UnsafeMutableRawPointer) {
        self.soname = soname
        self.handle = Handle(pointer: handle)
    }

    /// Opens the first of `candidates` that loads. The error names the library, the names tried, the
    /// loader's reason and the package to install: "cannot load libpq (libpq.so.5): libpq.so.5: cannot
    /// open shared object file: No such file or directory — install the libpq5 package".
    static func open(_ candidates: [String], library: String, package: String) -> Result<DynamicLibrary, ScalerError> {
        var reasons: [String] = []
        for soname in candidates {
            if let handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL) {
                return .success(DynamicLibrary(soname: soname, handle: handle))
            }
            reasons.append(dlerror().map { String(cString: $0) } ?? "unknown error")
        }
        // A library that exists but cannot load (a dependency is missing) says more than "not found".
        let notFound = ": cannot open shared object file: No such file or directory"
        let reason =
            zip(candidates, reasons).first { !$0.1.hasPrefix($0.0 + notFound) }?.1
            ?? reasons.first ?? "no candidates"
        return .failure(
            ScalerError(
                "cannot load \(library) (\(candidates.joined(separator: ", "))): \(reason) — install the \(package) package"))
    }

    /// Whether the library exports `name`.
    func has(_ name: String) -> Bool {
        dlsym(handle.pointer, name) != nil
    }

    /// The function `name`, cast to the C function type `F` (which must match its prototype).
    func function<F>(_ name: String, as type: F.Type = F.self) throws(ScalerError) -> F {
        guard let symbol = dlsym(handle.pointer, name) else {
            throw ScalerError("\(soname) has no function \(name); the installed version is not supported")
        }
        return unsafeBitCast(symbol, to: F.self)
    }
}

/// A library's function table, loaded once per process. A failure is not remembered: the next use
/// tries again (the package may have been installed in the meantime).
final class LazyLibrary<Functions: Sendable>: Sendable {
    private let state = Mutex<Functions?>(nil)
    private let load: @Sendable () -> Result<Functions, ScalerError>

    init(_ load: @escaping @Sendable () -> Result<Functions, ScalerError>) {
        self.load = load
    }

    func get() -> Result<Functions, ScalerError> {
        state.withLock { loaded in
            if let loaded { return .success(loaded) }
            let result = load()
            if case .success(let functions) = result { loaded = functions }
            return result
        }
    }
}

// MARK: - Helpers shared by the scaler clients

/// How waiting for a socket ended.
enum SocketWait: Equatable {
    case ready(readable: Bool, writable: Bool)
    case timedOut
    case failed(String)
}

/// poll(2) on one descriptor until it is ready for `events` or `deadline` passes.
func waitForSocket(_ fd: Int32, events: Int16, until deadline: Instant) -> SocketWait {
    while true {
        let now = MonotonicClock.now()
        guard now < deadline else { return .timedOut }
        let remaining = deadline.since(now).nanosecondsClamped
        let milliseconds = Int32(clamping: (remaining + 999_999) / 1_000_000)
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        let rc = poll(&descriptor, 1, milliseconds)
        if rc < 0 {
            if errno == EINTR { continue }
            return .failed(SystemError.message(errno))
        }
        if rc == 0 { continue }  // the loop re-checks the deadline (poll may wake a little early)
        let revents = descriptor.revents
        if revents & Int16(POLLNVAL) != 0 { return .failed("the socket is closed") }
        // POLLERR and POLLHUP count as ready: the next read or write reports what happened.
        let trouble = revents & Int16(POLLERR | POLLHUP) != 0
        return .ready(
            readable: revents & Int16(POLLIN) != 0 || trouble,
            writable: revents & Int16(POLLOUT) != 0 || trouble)
    }
}

/// A C error text on one line: runs of newlines, tabs and spaces (libpq's "\n\tIs the server
/// running…") become single spaces, and leading and trailing ones go.
func oneLine(_ text: String) -> String {
    text.split(whereSeparator: { $0 == "\n" || $0 == "\t" || $0 == "\r" || $0 == " " }).joined(separator: " ")
}
