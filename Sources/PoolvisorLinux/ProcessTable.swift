import Glibc
import PoolvisorSystem

/// What /proc says about processes.
public enum ProcessTable {
    /// Pids whose parent is this process: from /proc/self/task/*/children (one read per thread), or by
    /// scanning /proc where the kernel lacks CONFIG_PROC_CHILDREN.
    public static func ownChildren() -> [Int32] {
        let tasks = directoryEntries("/proc/self/task")
        var out: [Int32] = []
        for task in tasks {
            guard let text = RegularFile.read("/proc/self/task/\(task)/children").success else {
                return children(of: getpid())
            }
            out += text.split(separator: " ").compactMap { Int32($0) }
        }
        return out
    }

    /// Pids whose parent is `parent`, by scanning /proc.
    static func children(of parent: Int32) -> [Int32] {
        childrenByParent()[parent] ?? []
    }

    /// Every process below `root` in the process tree, children before their own children, from
    /// /proc/PID/task/*/children (or a scan of /proc without CONFIG_PROC_CHILDREN). A process forked
    /// while this runs may be missed; when its parent is killed, it becomes poolvisor's orphan, killed at
    /// the latest when poolvisor stops.
    public static func descendants(of root: Int32) -> [Int32] {
        var out: [Int32] = []
        var parents: [Int32: [Int32]]?
        var queue = [root]
        var next = 0
        while next < queue.count {
            let pid = queue[next]
            next += 1
            var children: [Int32] = []
            var readable = parents == nil
            if readable {
                for task in directoryEntries("/proc/\(pid)/task") {
                    guard let text = RegularFile.read("/proc/\(pid)/task/\(task)/children").success else {
                        readable = false
                        break
                    }
                    children += text.split(separator: " ").compactMap { Int32($0) }
                }
            }
            if !readable {
                if parents == nil { parents = childrenByParent() }
                children = parents?[pid] ?? []
            }
            out += children
            queue += children
        }
        return out
    }

    /// One scan of /proc: each parent's children.
    private static func childrenByParent() -> [Int32: [Int32]] {
        var map: [Int32: [Int32]] = [:]
        for name in directoryEntries("/proc") {
            guard let pid = Int32(name), let ppid = parent(of: pid) else { continue }
            map[ppid, default: []].append(pid)
        }
        return map
    }

    private static func parent(of pid: Int32) -> Int32? {
        guard let stat = RegularFile.read("/proc/\(pid)/stat").success, let close = stat.lastIndex(of: ")") else { return nil }
        // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// The process's name (/proc/PID/comm, as `prctl(PR_SET_NAME)` set it), or nil once it is gone.
    public static func name(of pid: Int32) -> String? {
        RegularFile.read("/proc/\(pid)/comm").success.map { String($0.prefix { $0 != "\n" }) }
    }

    /// How many files this process has open (the entries of /proc/self/fd, less the one reading it).
    public static func openFileCount() -> Int? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
        }
        return max(count - 1, 0)
    }

    private static func directoryEntries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
