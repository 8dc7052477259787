import PoolvisorCore

/// What validation needs to know about the host: files, directories, executables and the
/// supervisor's own environment. The edge implements it against the real system; tests with a fake.
public protocol HostProbe {
    /// The contents of a text file, or why it cannot be read ("No such file or directory").
    func readTextFile(_ path: String) -> Result<String, HostProbeError>
    func isDirectory(_ path: String) -> Bool
    func isExecutableFile(_ path: String) -> Bool
    /// The id of the Unix group `name`, if the host has one.
    func groupID(named name: String) -> UInt32?
    /// The account `name` (or a numeric uid), if the host has one.
    func user(named name: String) -> HostUser?
    /// Owner and permission bits of a file, if it exists.
    func fileStatus(_ path: String) -> FileStatus?
    /// Whether `name` is a time zone this host knows (an IANA name such as "Europe/Berlin", or "UTC").
    func knowsTimeZone(_ name: String) -> Bool
    /// This host's name, for `{hostname}` in a pool's command and environment.
    var hostname: String { get }
    /// The CPUs this host has online, as ids (`0...n-1` on most).
    var onlineCPUs: Set<Int> { get }
    /// The supervisor's own environment (workers inherit only PATH, LANG, TZ and HOME from it).
    var supervisorEnvironment: [String: String] { get }
    /// Env files are not read and connection variables they would set are taken on trust: `export`
    /// loads a pools file this way, so no secret value is ever in what it renders.
    var withholdsSecrets: Bool { get }
}

extension HostProbe {
    public var withholdsSecrets: Bool { false }
}

public struct HostProbeError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// A user account as the host resolves it: what a worker running as that user gets.
public struct HostUser: Sendable, Equatable {
    public var name: String
    public var uid: UInt32
    /// The primary group.
    public var gid: UInt32
    public var home: String
    /// Supplementary groups, from the group database (initgroups).
    public var groups: [UInt32]

    public init(name: String, uid: UInt32, gid: UInt32, home: String, groups: [UInt32]) {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home
        self.groups = groups
    }
}

public struct FileStatus: Sendable, Equatable {
    public var owner: UInt32
    public var group: UInt32
    /// Permission bits, e.g. 0o640.
    public var mode: UInt32

    public init(owner: UInt32, group: UInt32, mode: UInt32) {
        self.owner = owner
        self.group = group
        self.mode = mode
    }
}
