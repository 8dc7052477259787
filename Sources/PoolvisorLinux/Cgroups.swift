import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// Per-worker cgroups: each worker gets a cgroup of its own, created before it is spawned (it joins
/// it in the vfork child, before exec, so it never runs unconfined), limited by its pool's resources,
/// and removed after it is reaped. The cgroup also tells an OOM kill from any other SIGKILL, kills a
/// worker's whole tree (even processes that left its process group), and measures its CPU and memory.
///
/// - cgroup v2 (current distributions): the subtree systemd delegates to the unit (`Delegate=yes`).
///   poolvisor moves itself into a `supervisor` leaf (a cgroup that hands controllers to its children
///   may hold no process itself), enables the controllers it was given, and puts each worker in a
///   sibling cgroup. Killing uses `cgroup.kill`.
/// - cgroup v1 (this build machine: one hierarchy per controller): the memory, cpu, cpuacct and pids
///   hierarchies, below the supervisor's own cgroup in each.
public final class Cgroups {
    enum Layout {
        /// controller → this supervisor's directory for its workers (`…/poolvisor-PID`).
        case v1([String: String])
        /// The delegated cgroup (the unit's), with the controllers enabled for the workers.
        case v2(root: String, controllers: Set<String>)
    }

    /// One worker's cgroup directories (one per hierarchy) and the `cgroup.procs` files it joins.
    public final class WorkerCgroup {
        let directories: [String: String]  // controller → directory
        public var joinFiles: [Int32]

        init(directories: [String: String], joinFiles: [Int32]) {
            self.directories = directories
            self.joinFiles = joinFiles
        }

        /// Closes the `cgroup.procs` files once the worker has joined.
        func closeJoinFiles() {
            for fd in joinFiles { close(fd) }
            joinFiles = []
        }
    }

    static let controllers = ["memory", "cpu", "cpuacct", "pids"]

    let layout: Layout
    private var bases: [String: String] {
        if case .v1(let b) = layout { return b }
        return [:]
    }
    private var byPid: [Int32: WorkerCgroup] = [:]
    /// Cgroups whose worker is gone but which still hold processes (orphans not yet reaped).
    private var leftovers: [WorkerCgroup] = []
    private var cpuRate = CPURate()
    /// The `poolvisor-PID` directories are made when the first worker needs them.
    private var basesMade = false

    private init(layout: Layout) {
        self.layout = layout
    }

    /// Limits this host cannot apply (v2 controllers not delegated), for the warning; nil when all can.
    public var missingControllers: String? {
        guard case .v2(_, let controllers) = layout else { return nil }
        let missing = ["memory", "cpu", "pids"].filter { !controllers.contains($0) }
        return missing.isEmpty ? nil : "the \(missing.joined(separator: ", ")) controller\(missing.count == 1 ? " is" : "s are") not available to poolvisor's cgroup"
    }

    public enum Detection {
        case usable(Cgroups)
        /// Why limits cannot be enforced on this host.
        case unusable(String)
    }

    /// The hierarchies to use, or why limits cannot be enforced here.
    public static func detect() -> Detection {
        guard geteuid() == 0 else { return .unusable("poolvisor is not running as root, so it cannot create cgroups") }
        guard case .success(let own) = RegularFile.read("/proc/self/cgroup"),
            case .success(let mounts) = RegularFile.read("/proc/self/mountinfo", limit: 64 << 20, what: "mountinfo")
        else {
            return .unusable("cannot read /proc/self/cgroup")
        }
        // "4:memory:/process_api/…" → controller → path of our own cgroup in that hierarchy.
        var ownPath: [String: String] = [:]
        for line in own.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            for c in parts[1].split(separator: ",") { ownPath[String(c)] = String(parts[2]) }
        }
        // mountinfo: "… root mountpoint … - cgroup cgroup rw,memory" → controller → (mount point, root).
        var mountOf: [String: (point: String, root: String)] = [:]
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-") else { continue }
            let left = fields[..<dash].map(String.init)
            let right = fields[(dash + 1)...].map(String.init)
            if left.count >= 5, left[4] == "/sys/fs/cgroup", right.first == "cgroup2" {
                return detectV2(ownCgroupFile: own)
            }
            guard left.count >= 5, right.count >= 3, right[0] == "cgroup" else { continue }
            for option in right[2].split(separator: ",") where controllers.contains(String(option)) {
                mountOf[String(option)] = (left[4], left[3])
            }
        }
        var bases: [String: String] = [:]
        for c in controllers {
            guard let mount = mountOf[c], let path = ownPath[c] else {
                return .unusable("the cgroup v1 '\(c)' controller is not mounted")
            }
            let relative = mount.root == "/" ? path : String(path.dropFirst(mount.root.count))
            let parent = mount.point + (relative == "/" ? "" : relative)
            guard access(parent, W_OK) == 0 else {
                return .unusable("cannot write to \(parent): \(SystemError.message(errno))")
            }
            bases[c] = parent + "/poolvisor-\(getpid())"
        }
        let cgroups = Cgroups(layout: .v1(bases))
        cgroups.removeStale()
        return .usable(cgroups)
    }

    /// v2: only a cgroup systemd delegated to us (it marks it with the `trusted.delegate` xattr) is ours
    /// to divide; poolvisor moves into a `supervisor` leaf and enables the controllers it was given.
    private static func detectV2(ownCgroupFile: String) -> Detection {
        guard let line = ownCgroupFile.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else {
            return .unusable("cannot find poolvisor's cgroup in /proc/self/cgroup")
        }
        var own = String(line.dropFirst(3))
        if own.hasSuffix("/supervisor") { own = String(own.dropLast("/supervisor".count)) }  // a restart in place
        let root = "/sys/fs/cgroup" + (own == "/" ? "" : own)
        var flag = [UInt8](repeating: 0, count: 8)
        let delegated = ["trusted.delegate", "user.delegate"].contains { (name: String) -> Bool in
            cshim_getxattr(root, name, &flag, flag.count) > 0 && flag[0] == UInt8(ascii: "1")
        }
        guard delegated else {
            return .unusable("poolvisor's cgroup \(own) is not delegated to it (run it as a systemd service with Delegate=yes)")
        }
        let leaf = root + "/supervisor"
        guard mkdir(leaf, 0o755) == 0 || errno == EEXIST else { return .unusable("cannot create \(leaf): \(SystemError.message(errno))") }
        guard writeFile(leaf + "/cgroup.procs", "\(getpid())") else {
            return .unusable("cannot move poolvisor into \(leaf): \(SystemError.message(errno))")
        }
        let available = Set((readText(root + "/cgroup.controllers") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        let wanted = ["memory", "cpu", "pids"].filter { available.contains($0) }
        var enabled = Set<String>()
        for c in wanted where writeFile(root + "/cgroup.subtree_control", "+\(c)") { enabled.insert(c) }
        return .usable(Cgroups(layout: .v2(root: root, controllers: enabled)))
    }

    /// Creates the worker's cgroups with its limits; the spawn shim joins them.
    public func prepare(_ launch: WorkerLaunch) throws -> WorkerCgroup {
        let name = "\(launch.replica.pool).\(launch.replica.index).\(launch.serial)"
        if case .v2(let root, let controllers) = layout {
            return try prepareV2(root + "/" + name, launch.resources, controllers)
        }
        var directories: [String: String] = [:]
        var files: [Int32] = []
        func fail(_ what: String) -> SystemError {
            let error = SystemError(what)
            for fd in files { close(fd) }
            for dir in directories.values { rmdir(dir) }
            return error
        }
        if !basesMade {
            for base in bases.values where mkdir(base, 0o755) != 0 && errno != EEXIST { throw SystemError("mkdir \(base)") }
            basesMade = true
        }
        for (controller, base) in bases {
            let dir = base + "/" + name
            guard mkdir(dir, 0o755) == 0 || errno == EEXIST else { throw fail("mkdir \(dir)") }
            directories[controller] = dir
        }
        let r = launch.resources
        let memory = directories["memory"]!
        if let limit = r.memoryLimit {
            guard write(memory + "/memory.limit_in_bytes", "\(limit)") else { throw fail("set memory.limit_in_bytes") }
            // No swapping past the limit either (where swap is accounted), as in Kubernetes.
            _ = write(memory + "/memory.memsw.limit_in_bytes", "\(limit)")
        }
        if let request = r.memoryRequest { _ = write(memory + "/memory.soft_limit_in_bytes", "\(request)") }
        let cpu = directories["cpu"]!
        if let limit = r.cpuLimit {
            let period = 100_000
            guard write(cpu + "/cpu.cfs_period_us", "\(period)"),
                write(cpu + "/cpu.cfs_quota_us", "\(max(Int(saturating: limit * Double(period)), 1000))")
            else { throw fail("set cpu.cfs_quota_us") }
        }
        if let request = r.cpuRequest { _ = write(cpu + "/cpu.shares", "\(max(Int(saturating: request * 1024), 2))") }
        if let pids = r.pidsLimit {
            guard write(directories["pids"]! + "/pids.max", "\(pids)") else { throw fail("set pids.max") }
        }
        for dir in directories.values {
            let fd = open(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw fail("open \(dir)/cgroup.procs") }
            files.append(fd)
        }
        return WorkerCgroup(directories: directories, joinFiles: files)
    }

    private func prepareV2(_ dir: String, _ r: Resources, _ controllers: Set<String>) throws -> WorkerCgroup {
        guard mkdir(dir, 0o755) == 0 || errno == EEXIST else { throw SystemError("mkdir \(dir)") }
        func fail(_ what: String) -> SystemError {
            let error = SystemError(what)
            rmdir(dir)
            return error
        }
        if controllers.contains("memory") {
            if let limit = r.memoryLimit {
                guard write(dir + "/memory.max", "\(limit)") else { throw fail("set memory.max") }
                _ = write(dir + "/memory.swap.max", "0")
            }
            if let request = r.memoryRequest { _ = write(dir + "/memory.low", "\(request)") }
        }
        if controllers.contains("cpu") {
            if let limit = r.cpuLimit {
                guard write(dir + "/cpu.max", "\(max(Int(saturating: limit * 100_000), 1000)) 100000") else { throw fail("set cpu.max") }
            }
            if let request = r.cpuRequest {
                // Kubernetes' conversion of a request to shares (1024 per core), then to a v2 weight.
                let shares = max(Int(saturating: request * 1024), 2)
                _ = write(dir + "/cpu.weight", "\(1 + (shares - 2) * 9999 / 262_142)")
            }
        }
        if controllers.contains("pids"), let pids = r.pidsLimit {
            guard write(dir + "/pids.max", "\(pids)") else { throw fail("set pids.max") }
        }
        let fd = open(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open \(dir)/cgroup.procs") }
        return WorkerCgroup(directories: ["unified": dir], joinFiles: [fd])
    }

    /// The spawn failed: remove the cgroup it would have joined.
    public func discard(_ cgroup: WorkerCgroup) {
        cgroup.closeJoinFiles()
        _ = remove(cgroup)
    }

    /// The worker with this pid runs in `cgroup`.
    public func adopt(_ cgroup: WorkerCgroup, pid: Int32) {
        cgroup.closeJoinFiles()
        byPid[pid] = cgroup
    }

    public func cgroup(of pid: Int32) -> WorkerCgroup? { byPid[pid] }

    /// Each worker's cgroup directories, for an in-place upgrade: the new image goes on with them.
    public func handover() -> [Int32: [String: String]] { byPid.mapValues(\.directories) }

    /// The workers' cgroups an earlier image made.
    public func adopt(_ handed: [Int32: [String: String]]) {
        for (pid, directories) in handed { byPid[pid] = WorkerCgroup(directories: directories, joinFiles: []) }
    }

    /// Open `cgroup.procs` files of the worker's cgroups, for a process that must run beside it (an
    /// exec probe); empty when it has none. The caller closes them.
    public func joinFiles(of pid: Int32) -> [Int32] {
        guard let cgroup = byPid[pid] else { return [] }
        return cgroup.directories.values.sorted().compactMap { dir in
            let fd = open(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
            return fd >= 0 ? fd : nil
        }
    }

    /// Whether the OOM killer has killed a process of this worker's cgroup.
    public func oomKilled(_ pid: Int32) -> Bool {
        if let dir = byPid[pid]?.directories["unified"] {
            return readText(dir + "/memory.events").flatMap { field("oom_kill", in: $0) }.map { $0 > 0 } ?? false
        }
        guard let dir = byPid[pid]?.directories["memory"],
            case .success(let text) = RegularFile.read(dir + "/memory.oom_control")
        else { return false }
        return field("oom_kill", in: text).map { $0 > 0 } ?? false
    }

    /// SIGKILL to every process in the worker's cgroup, wherever it moved in the process tree.
    /// Returns how many were signalled.
    @discardableResult
    public func killAll(_ pid: Int32) -> Int {
        guard let cgroup = byPid[pid] else { return 0 }
        return killAll(cgroup)
    }

    private func killAll(_ cgroup: WorkerCgroup) -> Int {
        if let dir = cgroup.directories["unified"] {
            let alive = members(cgroup).count
            if alive > 0 && write(dir + "/cgroup.kill", "1") { return alive }  // kernel 5.14+: the whole tree at once
        }
        var count = 0
        for member in members(cgroup) where kill(member, SIGKILL) == 0 { count += 1 }
        return count
    }

    /// After the worker was reaped: removes its cgroup, or keeps it for later while leftovers remain.
    public func release(_ pid: Int32) {
        cpuRate.forget(pid)
        guard let cgroup = byPid.removeValue(forKey: pid) else { return }
        if !remove(cgroup) {
            _ = killAll(cgroup)
            leftovers.append(cgroup)
        }
    }

    /// Tries again to remove the cgroups of gone workers (after their leftovers were reaped).
    public func retryLeftovers() {
        leftovers.removeAll { remove($0) }
    }

    /// Removes everything at the end.
    public func removeAll() {
        for cgroup in byPid.values { _ = killAll(cgroup) }
        leftovers += byPid.values
        byPid = [:]
        retryLeftovers()
        for base in bases.values { rmdir(base) }
        // v2: the unit's cgroup and the supervisor leaf are systemd's to remove when the service stops.
    }

    /// CPU and memory (usage minus inactive file cache: Kubernetes' working set) of each worker.
    public func usage(of pids: Set<Int32>) -> [Int32: ProcessUsage] {
        let now = MonotonicClock.now()
        var out: [Int32: ProcessUsage] = [:]
        for pid in pids {
            guard let cgroup = byPid[pid], let (ns, workingSet) = reading(cgroup) else { continue }
            let percent = cpuRate.percent(pid, nanoseconds: ns, at: now) ?? 0
            out[pid] = ProcessUsage(cpuSeconds: Double(ns) / 1e9, cpuPercent: percent, rssBytes: Int64(workingSet))
        }
        return out
    }

    /// Cumulative CPU nanoseconds and the working set in bytes: v2's cpu.stat and memory.current, or
    /// v1's cpuacct.usage and memory.usage_in_bytes.
    private func reading(_ cgroup: WorkerCgroup) -> (nanoseconds: UInt64, workingSet: UInt64)? {
        let cpu: UInt64?, memory: UInt64?, inactive: UInt64?
        if let dir = cgroup.directories["unified"] {
            cpu = readText(dir + "/cpu.stat").flatMap { field("usage_usec", in: $0) }.map { $0 * 1000 }
            memory = readNumber(dir + "/memory.current")
            inactive = readText(dir + "/memory.stat").flatMap { field("inactive_file", in: $0) }
        } else if let cpuDir = cgroup.directories["cpuacct"], let memDir = cgroup.directories["memory"] {
            cpu = readNumber(cpuDir + "/cpuacct.usage")
            memory = readNumber(memDir + "/memory.usage_in_bytes")
            inactive = readText(memDir + "/memory.stat").flatMap { field("total_inactive_file", in: $0) }
        } else {
            return nil
        }
        guard let cpu else { return nil }
        let used = memory ?? 0, cache = inactive ?? 0
        return (cpu, used > cache ? used - cache : 0)
    }

    // MARK: - Helpers

    private func members(_ cgroup: WorkerCgroup) -> [Int32] {
        guard let dir = cgroup.directories["unified"] ?? cgroup.directories["memory"] ?? cgroup.directories.values.first,
            case .success(let text) = RegularFile.read(dir + "/cgroup.procs")
        else { return [] }
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    private func remove(_ cgroup: WorkerCgroup) -> Bool {
        var done = true
        for dir in cgroup.directories.values where rmdir(dir) != 0 && errno != ENOENT { done = false }
        return done
    }

    /// Empty cgroups left by a supervisor that was killed (its workers died with it).
    private func removeStale() {
        for base in bases.values {
            let parent = String(base[..<base.lastIndex(of: "/")!])
            guard let dir = opendir(parent) else { continue }
            var stale: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name.hasPrefix("poolvisor-"), let pid = Int32(name.dropFirst("poolvisor-".count)),
                    pid != getpid(), kill(pid, 0) != 0, errno == ESRCH
                else { continue }
                stale.append(parent + "/" + name)
            }
            closedir(dir)
            for path in stale {
                if let sub = opendir(path) {
                    var children: [String] = []
                    while let entry = readdir(sub) {
                        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                        if entry.pointee.d_type == UInt8(DT_DIR), name != ".", name != ".." { children.append(path + "/" + name) }
                    }
                    closedir(sub)
                    for child in children { rmdir(child) }
                }
                rmdir(path)
            }
        }
    }

    private func write(_ path: String, _ value: String) -> Bool { Self.writeFile(path, value) }

    private static func writeFile(_ path: String, _ value: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }

    private func readText(_ path: String) -> String? { Self.readText(path) }

    private static func readText(_ path: String) -> String? {
        if case .success(let text) = RegularFile.read(path) { return text }
        return nil
    }

    private func readNumber(_ path: String) -> UInt64? {
        guard case .success(let text) = RegularFile.read(path) else { return nil }
        return UInt64(text.split(separator: "\n").first ?? "")
    }

    /// "name value" lines (memory.stat, memory.oom_control).
    private func field(_ name: String, in text: String) -> UInt64? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == name { return UInt64(parts[1]) }
        }
        return nil
    }
}
