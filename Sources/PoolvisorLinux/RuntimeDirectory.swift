import Glibc
import PoolvisorCore

/// Where the supervisor keeps its sockets: systemd's RuntimeDirectory= when it gave one,
/// /run/poolvisor as root, $XDG_RUNTIME_DIR/poolvisor otherwise, /tmp/poolvisor-UID as a last resort.
public enum RuntimeDirectory {
    public static func resolve() -> String {
        if let d = environment("RUNTIME_DIRECTORY"), !d.isEmpty {
            return String(d.split(separator: ":").first ?? Substring(d))
        }
        if getuid() == 0 { return "/run/poolvisor" }
        if let x = environment("XDG_RUNTIME_DIR"), !x.isEmpty { return x + "/poolvisor" }
        return "/tmp/poolvisor-\(getuid())"
    }

    /// Each replica's NOTIFY_SOCKET lives here, named `<pool>.<index>`.
    public static func notifyDirectory(runtime: String, instance: String) -> String {
        "\(runtime)/\(instance)/notify"
    }

    static func environment(_ key: String) -> String? {
        getenv(key).map { String(cString: $0) }
    }
}

/// Where the control socket is: the daemon serves one path, the CLI looks in the same places.
public enum ControlSocketPath {
    public static let name = "control.sock"

    /// The daemon's socket: `--socket`, else the pools file's `control_socket`, else in its runtime directory.
    public static func forDaemon(option: String?, file: PoolsFile) -> String {
        option ?? file.supervisor.controlSocket ?? RuntimeDirectory.resolve() + "/" + name
    }

    /// Where the CLI looks, most likely first; the first that exists is used. The first entry is where
    /// a supervisor started by this user in this environment would listen.
    public static func candidates(instance: String?) -> [String] {
        var out: [String] = []
        func add(_ path: String) { if !out.contains(path) { out.append(path) } }
        let xdg = RuntimeDirectory.environment("XDG_RUNTIME_DIR").flatMap { $0.isEmpty ? nil : $0 }
        if let instance {
            add("/run/poolvisor-\(instance)/\(name)")
            if let xdg { add("\(xdg)/poolvisor-\(instance)/\(name)") }
            return getuid() == 0 ? out : out.reversed()
        }
        add(RuntimeDirectory.resolve() + "/" + name)
        add("/run/poolvisor/\(name)")
        if let xdg { add("\(xdg)/poolvisor/\(name)") }
        return out
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }
}
