import CShim
import Glibc
import PoolvisorSystem

/// Who is on the other end of a control connection (SO_PEERCRED and the peer's groups).
extension ControlServer {
    static func peer(of fd: Int32) -> Peer? {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        guard cshim_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
        var groups = [gid_t](repeating: 0, count: 32)
        var n = cshim_peer_groups(fd, &groups, Int32(groups.count))
        if n > groups.count {
            groups = [gid_t](repeating: 0, count: Int(n))
            n = cshim_peer_groups(fd, &groups, Int32(groups.count))
        }
        let supplementary = n >= 0 ? Array(groups.prefix(Int(n))) : groupsFromProc(pid)
        return Peer(pid: pid, uid: uid, gid: gid, groups: supplementary)
    }

    /// The "Groups:" line of /proc/<pid>/status, for kernels without SO_PEERGROUPS (before 4.13). Unlike
    /// SO_PEERGROUPS this is read now, not at connect(), so a peer that changed its groups since then,
    /// or exited, is seen with its groups of now (or none).
    private static func groupsFromProc(_ pid: pid_t) -> [UInt32] {
        let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return [] }
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return [] }
        return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
    }
}

/// Why the control socket could not be set up.
public enum ControlServerError: Error, CustomStringConvertible {
    case alreadyServing(String)
    case notASocket(String)
    case pathTooLong(path: String, limit: Int)
    case relativePath(String)
    case system(SystemError)

    public var description: String {
        switch self {
        case .alreadyServing(let path):
            return "another poolvisor is already serving \(path)"
        case .notASocket(let path):
            return "\(path) exists and is not a socket; leaving it alone (remove it or choose another control socket path)"
        case .pathTooLong(let path, let limit):
            return "control socket path is \(path.utf8.count) bytes long; a UNIX socket address holds at most \(limit): \(path)"
        case .relativePath(let path):
            return "control socket path must be absolute: \(path)"
        case .system(let error):
            return "control socket: \(error)"
        }
    }
}
