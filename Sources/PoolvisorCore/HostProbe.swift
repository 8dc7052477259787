/// What validation needs to know about the host: files, directories, executables and the
/// supervisor's own environment. The edge implements it against the real system; tests with a fake.
public protocol HostProbe {
    /// The contents of a text file, or why it cannot be read ("No such file or directory").
    func readTextFile(_ path: String) -> Result<String, HostProbeError>
    func isDirectory(_ path: String) -> Bool
    func isExecutableFile(_ path: String) -> Bool
    /// The id of the Unix group `name`, if the host has one.
    func groupID(named name: String) -> UInt32?
    /// The supervisor's own environment (workers inherit only PATH, LANG, TZ and HOME from it).
    var supervisorEnvironment: [String: String] { get }
}

public struct HostProbeError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
