import Glibc

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
