import Glibc
import PoolvisorCore
import TOMLKit

/// Reads a pools file: TOMLKit parses it (syntax errors carry line and column), the core decodes and
/// validates it, with positions for every other error found by `SourceLocator`.
public enum PoolsFileLoader {
    public static func load(_ path: String, host: some HostProbe = LinuxHost()) -> PoolsFileDecoder.Result {
        let text: String
        switch host.readTextFile(path) {
        case .success(let t): text = t
        case .failure(let e):
            return .init(file: nil, diagnostics: [Diagnostic(.error, SourceLocation(file: path), key: "", "cannot read the pools file: \(e.message)")])
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let at = SourceLocation(file: path, line: error.source.begin.line, column: error.source.begin.column)
            return .init(file: nil, diagnostics: [Diagnostic(.error, at, key: "", describe(error))])
        } catch {
            return .init(file: nil, diagnostics: [Diagnostic(.error, SourceLocation(file: path), key: "", "not a valid TOML file: \(error)")])
        }
        return PoolsFileDecoder.decode(convert(table), text: text, file: path, host: host)
    }

    private static func describe(_ error: TOMLParseError) -> String {
        var message = error.description
        for prefix in ["Error while parsing ", "error while parsing "] where message.hasPrefix(prefix) {
            message = "invalid TOML: " + message.dropFirst(prefix.count)
        }
        if message.contains("redefine existing table") {
            message += " (each [pools.NAME] may appear only once)"
        }
        return message
    }

    static func convert(_ table: TOMLTable) -> ConfigTable {
        ConfigTable(table.keys.compactMap { key in table[key].map { (key, convert($0)) } })
    }

    static func convert(_ value: TOMLValueConvertible) -> ConfigValue {
        switch value.type {
        case .table: return .table(convert(value.table!))
        case .array: return .array(value.array!.map { convert($0) })
        case .string: return .string(value.string!)
        case .int: return .integer(value.int!)
        case .double: return .float(value.double!)
        case .bool: return .boolean(value.bool!)
        case .date: return .other(typeName: "date")
        case .time: return .other(typeName: "time")
        case .dateTime: return .other(typeName: "date-time")
        }
    }
}

/// `HostProbe` against the real file system and the supervisor's own environment.
public struct LinuxHost: HostProbe {
    public init() {}

    public func readTextFile(_ path: String) -> Result<String, HostProbeError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(HostProbeError(SystemError.message(errno))) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return .failure(HostProbeError("is a directory")) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { bytes += chunk[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .failure(HostProbeError(SystemError.message(errno))) }
            break
        }
        return .success(String(decoding: bytes, as: UTF8.self))
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
        return HostUser(name: userName, uid: pw.pw_uid, gid: pw.pw_gid, home: String(cString: pw.pw_dir),
                        groups: Array(groups.prefix(Int(max(count, 0)))))
    }

    public func fileStatus(_ path: String) -> FileStatus? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileStatus(owner: st.st_uid, group: st.st_gid, mode: st.st_mode & 0o7777)
    }

    public func knowsTimeZone(_ name: String) -> Bool { WallClock.knowsTimeZone(name) }

    public var onlineCPUs: Set<Int> {
        guard case .success(let text) = readTextFile("/sys/devices/system/cpu/online"),
              let cpus = CPUList.parse(text) else {
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
