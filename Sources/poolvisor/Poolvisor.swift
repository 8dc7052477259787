import ArgumentParser

@main
struct Poolvisor: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "poolvisor",
        abstract: "Runs pools of queue workers: a worker per replica, restarted with backoff, drained on stop.",
        version: version,
        subcommands: [
            Run.self, Status.self, Reload.self, Scale.self, Restart.self, RunJob.self, Events.self, Check.self, Upgrade.self, ExportPools.self, Import.self, ParseTOML.self,
            HandoverFormats.self,
        ]
    )
}

/// `--config`, shared by every subcommand that reads a pools file.
struct ConfigOption: ParsableArguments {
    static let defaultPath = "/etc/poolvisor/pools.toml"

    @Option(name: [.short, .long], help: ArgumentHelp("The pools file.", valueName: "file"))
    var config: String = ConfigOption.defaultPath
}
