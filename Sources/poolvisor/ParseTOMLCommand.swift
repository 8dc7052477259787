import ArgumentParser
import Glibc
import PoolvisorControl
import PoolvisorDaemon
import PoolvisorLinux

/// `poolvisor parse-toml`: the supervisor's parser process (see `ParserProcess`). Not for people.
struct ParseTOML: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parse-toml",
        abstract: "Parse TOML from stdin into poolvisor's JSON form on stdout (used by poolvisor itself).",
        shouldDisplay: false
    )

    func run() throws {
        Glibc.exit(ParserProcess.serve())
    }
}
