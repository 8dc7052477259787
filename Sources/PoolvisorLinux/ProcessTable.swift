import Glibc

/// What /proc says about processes.
enum ProcessTable {
    /// Pids whose parent is this process: from /proc/self/task/*/children (one read per thread), or by
    /// scanning /proc where the kernel lacks CONFIG_PROC_CHILDREN.
    static func ownChildren() -> [Int32] {
        let tasks = directoryEntries("/proc/self/task")
        var out: [Int32] = []
        for task in tasks {
            guard let text = LinuxHost().readTextFile("/proc/self/task/\(task)/children").success else {
                return children(of: getpid())
            }
            out += text.split(separator: " ").compactMap { Int32($0) }
        }
        return out
    }

    /// Pids whose parent is `parent`, by scanning /proc.
    static func children(of parent: Int32) -> [Int32] {
        directoryEntries("/proc").compactMap { name -> Int32? in
            guard let pid = Int32(name), let stat = LinuxHost().readTextFile("/proc/\(pid)/stat").success,
                  let close = stat.lastIndex(of: ")") else { return nil }
            // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent ? pid : nil
        }
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

extension Result {
    var success: Success? {
        if case .success(let s) = self { return s }
        return nil
    }
}
