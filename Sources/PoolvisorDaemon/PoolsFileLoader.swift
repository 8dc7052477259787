import Glibc
import PoolvisorConfig
import PoolvisorCore
import PoolvisorLinux
import PoolvisorSystem
import TOMLKit

/// Reads a pools file. It must be a regular file of at most `maximumFileBytes`, nested at most
/// `SourceLocator.maximumDepth` deep; TOMLKit parses it (syntax errors carry line and column), in a
/// short-lived child process when `parser` says so; the core decodes and validates it, with positions
/// for every other error found by `SourceLocator`.
public enum PoolsFileLoader {
    /// The largest pools file or env file poolvisor reads: far above any real one (a 50-pool file is
    /// about 10 KiB), far below what would make a reload slow or the supervisor large.
    public static let maximumFileBytes = 1 << 20

    /// Where the TOML is parsed.
    public enum Parser: Sendable {
        /// In this process: for `check`, which exits right after, and for tests.
        case inProcess
        /// In a child process (`ParserProcess`): what the supervisor does, so that whatever the parser
        /// leaks or crashes on stays out of it. A fork of `spawner`'s spawn server where there is one,
        /// else a new process running `executable parse-toml`.
        case childProcess(executable: String, forkingFrom: Spawner? = nil)

        /// The running binary itself, as the kernel knows it (the same version, even after a package
        /// upgrade replaced the file on disk).
        public static let ownBinary = Parser.childProcess(executable: "/proc/self/exe")

        /// A fork of the spawn server, or the running binary if the server is gone.
        public static func ownBinary(forkingFrom spawner: Spawner) -> Parser {
            .childProcess(executable: "/proc/self/exe", forkingFrom: spawner)
        }
    }

    public static func load(_ path: String, parser: Parser, host: some HostProbe = LinuxHost()) -> PoolsFileDecoder.Result {
        switch LinuxHost.readFile(path, limit: maximumFileBytes, what: "a pools file") {
        case .success(let text):
            return load(text: text, path: path, parser: parser, host: host)
        case .failure(let e):
            return .init(file: nil, diagnostics: [Diagnostic(.error, SourceLocation(file: path), key: "", "cannot read the pools file: \(e.message)")])
        }
    }

    /// The pools file `path` whose text has been read.
    public static func load(text: String, path: String, parser: Parser, host: some HostProbe = LinuxHost()) -> PoolsFileDecoder.Result {
        func failure(_ message: String, line: Int = 0, column: Int = 0) -> PoolsFileDecoder.Result {
            .init(file: nil, diagnostics: [Diagnostic(.error, SourceLocation(file: path, line: line, column: column), key: "", message)])
        }
        // The depth check before any parser sees the text; positions are found only for diagnostics.
        if let deep = SourceLocator.tooDeep(in: text) {
            return failure(
                "the pools file nests deeper than \(SourceLocator.maximumDepth) levels here (tables, dotted keys, arrays and inline tables together); nothing was read",
                line: deep.line, column: deep.column)
        }
        let document: ParsedDocument
        switch parser {
        case .inProcess:
            document = TOMLDocument.parse(text)
        case .childProcess(let executable, let spawner):
            switch ParserProcess.parse(text, executable: executable, forkingFrom: spawner) {
            case .success(let d): document = d
            case .failure(let e): return failure(e.message)
            }
        }
        switch document {
        case .syntaxError(let line, let column, let message):
            return failure(message, line: line, column: column)
        case .parsed(let table, let unreadable):
            var result = PoolsFileDecoder.decode(table, text: text, file: path, host: host)
            if !unreadable.isEmpty {
                let locator = SourceLocator(text: text)
                result.file = nil
                result.diagnostics =
                    unreadable.map { u in
                        let at =
                            locator.locate { $0.count > u.table.count && Array($0.prefix(u.table.count)) == u.table && $0[u.table.count].hasPrefix(u.key + "\0") }
                            ?? locator.locate(u.table) ?? (0, 0)
                        let section = u.table.isEmpty ? "the top level" : "[\(u.table.joined(separator: "."))]"
                        return Diagnostic(
                            .error, SourceLocation(file: path, line: at.line, column: at.column), key: (u.table + [u.key]).joined(separator: "."),
                            "a key in \(section) contains a NUL character (\\u0000 after '\(u.key)'); names and keys may not")
                    } + result.diagnostics
            }
            return result
        }
    }
}

/// The host as `poolvisor export` loads a pools file on it: env files are never opened (no secret
/// value can reach a rendering), and paths, executables and CPUs are the target platform's to have,
/// not this host's. Users, groups and time zones are still this host's: `runAsUser` needs a number.
public struct ExportHost: HostProbe {
    private let host = LinuxHost()
    public init() {}

    public func readTextFile(_ path: String) -> Result<String, HostProbeError> { .failure(HostProbeError("not read for an export")) }
    public func isDirectory(_ path: String) -> Bool { true }
    public func isExecutableFile(_ path: String) -> Bool { true }
    public func groupID(named name: String) -> UInt32? { host.groupID(named: name) }
    public func user(named name: String) -> HostUser? { host.user(named: name) }
    public func fileStatus(_ path: String) -> FileStatus? { nil }
    public func knowsTimeZone(_ name: String) -> Bool { host.knowsTimeZone(name) }
    public var hostname: String { host.hostname }
    public var onlineCPUs: Set<Int> { Set(0..<4096) }
    public var supervisorEnvironment: [String: String] { [:] }
    public var withholdsSecrets: Bool { true }
}

/// `HostProbe` against the real file system and the supervisor's own environment.
public struct LinuxHost: HostProbe {
    public init() {}

    /// An env file (or a small kernel file in /proc or /sys): at most `PoolsFileLoader.maximumFileBytes`.
    public func readTextFile(_ path: String) -> Result<String, HostProbeError> {
        Self.readFile(path, limit: PoolsFileLoader.maximumFileBytes, what: "an env file")
    }

    /// See `RegularFile.read`; its failure as the decoder's error.
    static func readFile(_ path: String, limit: Int, what: String) -> Result<String, HostProbeError> {
        RegularFile.read(path, limit: limit, what: what).mapError { HostProbeError($0.message) }
    }

    public func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public func isExecutableFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    public func groupID(named name: String) -> UInt32? {
        var group = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getgrnam_r(name, &group, &buffer, buffer.count, &result) == 0, let found = result else { return nil }
        return found.pointee.gr_gid
    }

    public func user(named name: String) -> HostUser? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        let found: passwd? = {
            if getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, let r = result { return r.pointee }
            if let uid = UInt32(name), getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, let r = result { return r.pointee }
            return nil
        }()
        guard let pw = found else { return nil }
        let userName = String(cString: pw.pw_name)
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(pw.pw_name, pw.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(pw.pw_name, pw.pw_gid, &groups, &count)
        }
        return HostUser(
            name: userName, uid: pw.pw_uid, gid: pw.pw_gid, home: String(cString: pw.pw_dir),
            groups: Array(groups.prefix(Int(max(count, 0)))))
    }

    public func fileStatus(_ path: String) -> FileStatus? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileStatus(owner: st.st_uid, group: st.st_gid, mode: st.st_mode & 0o7777)
    }

    public func knowsTimeZone(_ name: String) -> Bool { WallClock.knowsTimeZone(name) }

    public var hostname: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var onlineCPUs: Set<Int> {
        guard case .success(let text) = readTextFile("/sys/devices/system/cpu/online"),
            let cpus = CPUList.parse(text)
        else {
            return Set(0..<max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1))
        }
        return Set(cpus)
    }

    public var supervisorEnvironment: [String: String] {
        var env: [String: String] = [:]
        for key in WorkerVariable.inherited {
            if let v = getenv(key) { env[key] = String(cString: v) }
        }
        return env
    }
}
